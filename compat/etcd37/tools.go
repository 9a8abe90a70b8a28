//go:build tools

// Package tools pins etcd 3.7's programs and test suites as dependencies of this module,
// so that go.mod and go.sum fix the exact versions compat/ builds from the module proxy.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
	_ "go.etcd.io/etcd/tests/v3/e2e"
)
