//go:build tools

// Package tools pins etcd 3.7.3's robustness suite (and the etcd server it can rebuild with
// gofail's failpoints enabled) as dependencies of this module, so that go.mod and go.sum fix
// the exact versions compat/robustness/run builds from the module proxy.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "go.etcd.io/etcd/tests/v3/robustness"
	_ "go.etcd.io/gofail"
)
