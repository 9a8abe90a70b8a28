// Command clientv3 runs Go clientv3 3.7 scenarios against one server (real etcd or Cairn)
// and prints what it saw in compat/clients' block format, for compat/clients/compare.py:
// "## scenario NAME [needs=FEATURE]", then lines that must match between servers; lines
// starting with "~ " are informational; "ERROR ..." reports an error.
//
// Usage:
//
//	clientv3 -endpoint HOST:PORT [-server BIN] [-only NAME]
//	clientv3 -endpoint HOST:PORT -child KIND -id N
//
// The first runs every scenario (or only NAME); with -server, also the require-leader
// scenario on a 3-member cluster of BIN (isolated.go). The second is one contending process.
//
// Contention scenarios (mutex, election, STM) start several copies of this program as
// separate processes, so that the server sees independent clients, as in production.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.etcd.io/etcd/client/v3/leasing"
	"go.etcd.io/etcd/client/v3/mirror"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.etcd.io/etcd/client/v3/ordering"
	"go.uber.org/zap"
)

const (
	processes       = 4  // contending processes per contention scenario
	mutexRounds     = 10 // lock/increment/unlock rounds per process
	stmTransfers    = 15 // transfers per process
	accounts        = 5
	accountStartBal = 100
	scenarioTimeout = 60 * time.Second
)

var (
	endpoint = flag.String("endpoint", "127.0.0.1:2379", "server's client address")
	server   = flag.String("server", "", "server binary: also run the require-leader scenario on a 3-member cluster of it")
	only     = flag.String("only", "", "run only the scenario of this name")
)

func main() {
	child := flag.String("child", "", "run as one contending process: mutex, election or stm")
	id := flag.Int("id", 0, "contending process number")
	flag.Parse()
	if *child != "" {
		if err := runChild(*child, *id); err != nil {
			fmt.Fprintf(os.Stderr, "child %s %d: %v\n", *child, *id, err)
			os.Exit(1)
		}
		return
	}
	scenarios := []struct {
		name string
		run  func(*clientv3.Client) error
	}{
		{"kv-and-txn", kvAndTxn},
		{"kubernetes-client", kubernetesClient},
		{"watch-progress", watchProgress},
		{"watch-compacted", watchCompacted},
		{"concurrency-mutex", mutexContention},
		{"concurrency-election", electionContention},
		{"concurrency-stm", stmContention},
		{"ordering-kv", orderingKV},
		{"namespace", namespaced},
		{"leasing-kv", leasingKV},
		{"mirror", mirrorPrefix},
		{"range-stream needs=RangeStream", rangeStream},
	}
	if *server != "" {
		scenarios = append(scenarios, struct {
			name string
			run  func(*clientv3.Client) error
		}{"require-leader-isolated", func(*clientv3.Client) error { return requireLeader(*server) }})
	}
	for _, s := range scenarios {
		if *only != "" && strings.Fields(s.name)[0] != *only {
			continue
		}
		fmt.Printf("## scenario %s\n", s.name)
		cli, err := newClient()
		if err != nil {
			fmt.Printf("ERROR connect: %v\n", err)
			continue
		}
		if err := s.run(cli); err != nil {
			fmt.Printf("ERROR %v\n", err)
		}
		cli.Close()
	}
}

func newClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{*endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zapNop(),
	})
}

func zapNop() *zap.Logger { return zap.NewNop() }

func ctxTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), scenarioTimeout)
}

func kvLine(kv *mvccpb.KeyValue) string {
	if kv == nil {
		return "<nil>"
	}
	return fmt.Sprintf("key=%s value=%s create=%d mod=%d ver=%d lease=%t",
		kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease != 0)
}

// errLine prints an error the way a user sees it: its text (etcd's message).
func errLine(what string, err error) {
	if err == nil {
		fmt.Printf("%s -> ok\n", what)
		return
	}
	fmt.Printf("%s -> error %q\n", what, err.Error())
}

// ------------------------------------------------------------------ scenarios

func kvAndTxn(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	for i := 0; i < 5; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("/kv/%d", i), strconv.Itoa(i*i)); err != nil {
			return err
		}
	}
	r, err := cli.Get(ctx, "/kv/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend), clientv3.WithLimit(3))
	if err != nil {
		return err
	}
	fmt.Printf("get prefix sorted by value desc limit 3 -> count=%d more=%t rev=%d\n", r.Count, r.More, r.Header.Revision)
	for _, kv := range r.Kvs {
		fmt.Println("  " + kvLine(kv))
	}
	t, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("/kv/2"), "=", "4")).
		Then(clientv3.OpPut("/kv/2", "four", clientv3.WithPrevKV()), clientv3.OpGet("/kv/", clientv3.WithPrefix(), clientv3.WithCountOnly())).
		Else(clientv3.OpGet("/kv/2")).Commit()
	if err != nil {
		return err
	}
	fmt.Printf("txn value(/kv/2)==4 -> succeeded=%t prev=%s count=%d\n", t.Succeeded,
		kvLine(t.Responses[0].GetResponsePut().PrevKv), t.Responses[1].GetResponseRange().Count)
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("/kv/x", "1"), clientv3.OpPut("/kv/x", "2")).Commit()
	errLine("txn with two puts of one key", err)
	_, err = cli.Get(ctx, "/kv/0", clientv3.WithRev(1000))
	errLine("get at a future revision", err)
	d, err := cli.Delete(ctx, "/kv/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil {
		return err
	}
	fmt.Printf("delete prefix -> deleted=%d prev=%d\n", d.Deleted, len(d.PrevKvs))
	return nil
}

// kubernetesClient makes the calls kube-apiserver makes, through client/v3/kubernetes.
func kubernetesClient(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	k := kubernetes.Client{Client: cli}
	k.Kubernetes = k
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		return err
	}
	var revs []int64
	for i := 0; i < 5; i++ {
		p, err := k.OptimisticPut(ctx, fmt.Sprintf("/registry/pods/ns/p%d", i), []byte(fmt.Sprintf("v%d", i)), 0,
			kubernetes.PutOptions{LeaseID: lease.ID})
		if err != nil {
			return err
		}
		fmt.Printf("create p%d -> succeeded=%t rev=%d\n", i, p.Succeeded, p.Revision)
		revs = append(revs, p.Revision)
	}
	p, err := k.OptimisticPut(ctx, "/registry/pods/ns/p0", []byte("again"), 0, kubernetes.PutOptions{GetOnFailure: true})
	if err != nil {
		return err
	}
	fmt.Printf("create p0 again -> succeeded=%t current=%s\n", p.Succeeded, kvLine(p.KV))
	p, err = k.OptimisticPut(ctx, "/registry/pods/ns/p0", []byte("v0b"), revs[0], kubernetes.PutOptions{GetOnFailure: true})
	if err != nil {
		return err
	}
	fmt.Printf("update p0 at its revision -> succeeded=%t rev=%d\n", p.Succeeded, p.Revision)
	p, err = k.OptimisticPut(ctx, "/registry/pods/ns/p0", []byte("stale"), revs[0], kubernetes.PutOptions{GetOnFailure: true})
	if err != nil {
		return err
	}
	fmt.Printf("update p0 at a stale revision -> succeeded=%t current=%s\n", p.Succeeded, kvLine(p.KV))
	g, err := k.Get(ctx, "/registry/pods/ns/p0", kubernetes.GetOptions{Revision: revs[4]})
	if err != nil {
		return err
	}
	fmt.Printf("get p0 at rev %d -> %s rev=%d\n", revs[4], kvLine(g.KV), g.Revision)
	// Paginated list at a fixed revision, the way the apiserver pages with a continue key.
	listRev := int64(0)
	cont := ""
	for page := 0; ; page++ {
		l, err := k.List(ctx, "/registry/pods/", kubernetes.ListOptions{Revision: listRev, Limit: 2, Continue: cont})
		if err != nil {
			return err
		}
		if listRev == 0 {
			listRev = l.Revision
		}
		var keys []string
		for _, kv := range l.Kvs {
			keys = append(keys, string(kv.Key))
		}
		fmt.Printf("list page %d -> keys=%v count=%d rev=%d\n", page, keys, l.Count, l.Revision)
		if len(l.Kvs) == 0 || int64(len(l.Kvs)) >= l.Count {
			break
		}
		cont = string(l.Kvs[len(l.Kvs)-1].Key) + "\x00"
		// A write between pages must not show in later pages of the same list.
		if page == 0 {
			if _, err := cli.Put(ctx, "/registry/pods/ns/p9", "late"); err != nil {
				return err
			}
		}
	}
	n, err := k.Count(ctx, "/registry/pods/", kubernetes.CountOptions{})
	if err != nil {
		return err
	}
	fmt.Printf("count -> %d\n", n)
	d, err := k.OptimisticDelete(ctx, "/registry/pods/ns/p1", revs[0], kubernetes.DeleteOptions{GetOnFailure: true})
	if err != nil {
		return err
	}
	fmt.Printf("delete p1 at a wrong revision -> succeeded=%t current=%s\n", d.Succeeded, kvLine(d.KV))
	d, err = k.OptimisticDelete(ctx, "/registry/pods/ns/p1", revs[1], kubernetes.DeleteOptions{GetOnFailure: true})
	if err != nil {
		return err
	}
	fmt.Printf("delete p1 at its revision -> succeeded=%t rev=%d\n", d.Succeeded, d.Revision)
	// The apiserver's compaction: a txn on compact_rev_key's version, then Compact.
	t, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("compact_rev_key"), "=", 0)).
		Then(clientv3.OpPut("compact_rev_key", strconv.FormatInt(revs[2], 10))).
		Else(clientv3.OpGet("compact_rev_key")).Commit()
	if err != nil {
		return err
	}
	fmt.Printf("compact_rev_key txn -> succeeded=%t rev=%d\n", t.Succeeded, t.Header.Revision)
	_, err = cli.Compact(ctx, revs[2], clientv3.WithCompactPhysical())
	errLine(fmt.Sprintf("compact at %d", revs[2]), err)
	_, err = k.Get(ctx, "/registry/pods/ns/p0", kubernetes.GetOptions{Revision: revs[1]})
	errLine("get below the compacted revision", err)
	return nil
}

func watchProgress(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	start, err := cli.Put(ctx, "/wp/start", "0")
	if err != nil {
		return err
	}
	wctx := clientv3.WithRequireLeader(ctx)
	wch := cli.Watch(wctx, "/wp/", clientv3.WithPrefix(), clientv3.WithRev(start.Header.Revision+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
	created := <-wch
	fmt.Printf("created -> created=%t rev=%d\n", created.Created, created.Header.Revision)
	if _, err := cli.Put(ctx, "/wp/a", "1"); err != nil {
		return err
	}
	if _, err := cli.Put(ctx, "/wp/a", "2"); err != nil {
		return err
	}
	seen := 0
	for seen < 2 {
		wr, ok := <-wch
		if !ok {
			return errors.New("watch closed")
		}
		for _, ev := range wr.Events {
			seen++
			fmt.Printf("event %s %s prev=%s\n", ev.Type, kvLine(ev.Kv), kvLine(ev.PrevKv))
		}
	}
	// RequestProgress on the same stream: answered once every watcher on it is synced.
	if err := cli.RequestProgress(wctx); err != nil {
		return err
	}
	wr := <-wch
	fmt.Printf("progress -> notify=%t events=%d rev=%d\n", wr.IsProgressNotify(), len(wr.Events), wr.Header.Revision)
	return nil
}

func watchCompacted(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	var last int64
	for i := 0; i < 3; i++ {
		r, err := cli.Put(ctx, "/wc/k", strconv.Itoa(i))
		if err != nil {
			return err
		}
		last = r.Header.Revision
	}
	if _, err := cli.Compact(ctx, last); err != nil {
		return err
	}
	wr := <-cli.Watch(ctx, "/wc/k", clientv3.WithRev(last-1))
	fmt.Printf("watch from a compacted revision -> canceled=%t compact_revision=%d err=%q\n",
		wr.Canceled, wr.CompactRevision, fmt.Sprint(wr.Err()))
	return nil
}

func orderingKV(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	violations := 0
	okv := ordering.NewKV(cli.KV, func(op clientv3.Op, resp clientv3.OpResponse, prevRev int64) error {
		violations++
		return nil
	})
	for i := 0; i < 10; i++ {
		if _, err := okv.Put(ctx, "/ord/k", strconv.Itoa(i)); err != nil {
			return err
		}
		if _, err := okv.Get(ctx, "/ord/k", clientv3.WithSerializable()); err != nil {
			return err
		}
		if _, err := okv.Txn(ctx).If(clientv3.Compare(clientv3.Value("/ord/k"), "=", strconv.Itoa(i))).
			Then(clientv3.OpGet("/ord/k")).Commit(); err != nil {
			return err
		}
	}
	r, err := okv.Get(ctx, "/ord/k")
	if err != nil {
		return err
	}
	fmt.Printf("after 10 put/get/txn rounds -> %s violations=%d\n", kvLine(r.Kvs[0]), violations)
	return nil
}

func namespaced(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	nkv := namespace.NewKV(cli.KV, "tenant/")
	nw := namespace.NewWatcher(cli.Watcher, "tenant/")
	nl := namespace.NewLease(cli.Lease, "tenant/")
	l, err := nl.Grant(ctx, 30)
	if err != nil {
		return err
	}
	p, err := nkv.Put(ctx, "a", "1", clientv3.WithLease(l.ID))
	if err != nil {
		return err
	}
	wch := nw.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(p.Header.Revision))
	if _, err := nkv.Put(ctx, "b", "2"); err != nil {
		return err
	}
	var keys []string
	for len(keys) < 2 {
		wr := <-wch
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			keys = append(keys, string(ev.Kv.Key))
		}
	}
	fmt.Printf("namespaced watch -> %v\n", keys)
	g, err := nkv.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		return err
	}
	for _, kv := range g.Kvs {
		fmt.Println("namespaced get -> " + kvLine(kv))
	}
	raw, err := cli.Get(ctx, "tenant/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	for _, kv := range raw.Kvs {
		fmt.Printf("raw key -> %s\n", kv.Key)
	}
	t, err := nkv.Txn(ctx).If(clientv3.Compare(clientv3.Value("a"), "=", "1")).Then(clientv3.OpDelete("", clientv3.WithPrefix())).Commit()
	if err != nil {
		return err
	}
	fmt.Printf("namespaced txn delete all -> succeeded=%t deleted=%d\n", t.Succeeded, t.Responses[0].GetResponseDeleteRange().Deleted)
	return nil
}

func leasingKV(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	cli2, err := newClient()
	if err != nil {
		return err
	}
	defer cli2.Close()
	lkv1, close1, err := leasing.NewKV(cli, "leasing/")
	if err != nil {
		return err
	}
	defer close1()
	lkv2, close2, err := leasing.NewKV(cli2, "leasing/")
	if err != nil {
		return err
	}
	defer close2()
	if _, err := lkv1.Put(ctx, "lk", "v1"); err != nil {
		return err
	}
	for i := 0; i < 2; i++ {
		g, err := lkv1.Get(ctx, "lk")
		if err != nil {
			return err
		}
		fmt.Printf("leasing client 1 get %d -> %s\n", i, kvLine(g.Kvs[0]))
	}
	// A write by the other leasing client revokes client 1's lease on the key first.
	if _, err := lkv2.Put(ctx, "lk", "v2"); err != nil {
		return err
	}
	g, err := lkv1.Get(ctx, "lk")
	if err != nil {
		return err
	}
	fmt.Printf("leasing client 1 get after client 2 put -> %s\n", kvLine(g.Kvs[0]))
	d, err := lkv2.Delete(ctx, "lk")
	if err != nil {
		return err
	}
	fmt.Printf("leasing client 2 delete -> deleted=%d\n", d.Deleted)
	g, err = lkv1.Get(ctx, "lk")
	if err != nil {
		return err
	}
	fmt.Printf("leasing client 1 get after delete -> kvs=%d\n", len(g.Kvs))
	return nil
}

func mirrorPrefix(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	for i := 0; i < 25; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("/src/%02d", i), strconv.Itoa(i)); err != nil {
			return err
		}
	}
	s := mirror.NewSyncer(cli, "/src/", 0)
	base, errc := s.SyncBase(ctx)
	copied := 0
	for r := range base {
		for _, kv := range r.Kvs {
			if _, err := cli.Put(ctx, "/dst/"+strings.TrimPrefix(string(kv.Key), "/src/"), string(kv.Value)); err != nil {
				return err
			}
			copied++
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	fmt.Printf("sync base -> copied %d keys\n", copied)
	updates := s.SyncUpdates(ctx)
	if _, err := cli.Put(ctx, "/src/new", "n"); err != nil {
		return err
	}
	if _, err := cli.Delete(ctx, "/src/00"); err != nil {
		return err
	}
	for applied := 0; applied < 2; {
		wr := <-updates
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			dst := "/dst/" + strings.TrimPrefix(string(ev.Kv.Key), "/src/")
			var err error
			if ev.Type == clientv3.EventTypePut {
				_, err = cli.Put(ctx, dst, string(ev.Kv.Value))
			} else {
				_, err = cli.Delete(ctx, dst)
			}
			if err != nil {
				return err
			}
			fmt.Printf("sync update -> %s %s\n", ev.Type, ev.Kv.Key)
			applied++
		}
	}
	src, _ := cli.Get(ctx, "/src/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	dst, err := cli.Get(ctx, "/dst/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	fmt.Printf("source keys=%d mirror keys=%d\n", src.Count, dst.Count)
	return nil
}

func rangeStream(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	for i := 0; i < 30; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("/rs/%02d", i), strings.Repeat("x", 100)); err != nil {
			return err
		}
	}
	ch, err := cli.KV.GetStream(ctx, "/rs/", clientv3.WithPrefix())
	if err != nil {
		return err
	}
	keys := 0
	for chunk := range ch {
		if err := chunk.Err(); err != nil {
			return err
		}
		if chunk.RangeResponse != nil {
			keys += len(chunk.RangeResponse.Kvs)
		}
	}
	fmt.Printf("range stream -> keys=%d\n", keys)
	return nil
}

// ------------------------------------------------------------------ contention

// contend starts `processes` copies of this program as children of the given kind and
// prints their standard output lines, sorted.
func contend(kind string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	outs := make([]string, processes)
	errs := make([]error, processes)
	for i := 0; i < processes; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cmd := exec.Command(self, "-endpoint", *endpoint, "-child", kind, "-id", strconv.Itoa(i))
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			outs[i], errs[i] = string(out), err
		}(i)
	}
	wg.Wait()
	var lines []string
	for i := range outs {
		if errs[i] != nil {
			return fmt.Errorf("process %d: %v", i, errs[i])
		}
		for _, l := range strings.Split(strings.TrimSpace(outs[i]), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	return nil
}

func mutexContention(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	if _, err := cli.Put(ctx, "/counter", "0"); err != nil {
		return err
	}
	if err := contend("mutex"); err != nil {
		return err
	}
	g, err := cli.Get(ctx, "/counter")
	if err != nil {
		return err
	}
	fmt.Printf("counter -> %s (want %d)\n", g.Kvs[0].Value, processes*mutexRounds)
	// TryLock while another session holds the lock.
	s1, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		return err
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		return err
	}
	defer s2.Close()
	m1, m2 := concurrency.NewMutex(s1, "/mutex/"), concurrency.NewMutex(s2, "/mutex/")
	errLine("lock by session 1", m1.Lock(ctx))
	errLine("trylock by session 2", m2.TryLock(ctx))
	errLine("unlock by session 1", m1.Unlock(ctx))
	errLine("trylock by session 2 after unlock", m2.TryLock(ctx))
	errLine("unlock by session 2", m2.Unlock(ctx))
	left, err := cli.Get(ctx, "/mutex/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	fmt.Printf("lock keys left -> %d\n", left.Count)
	return nil
}

func electionContention(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		return err
	}
	defer s.Close()
	observer := concurrency.NewElection(s, "/election/")
	_, err = observer.Leader(ctx)
	errLine("leader before any campaign", err)
	errLine("proclaim without leading", observer.Proclaim(ctx, "x"))
	errLine("resign without leading", observer.Resign(ctx))
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	obs := observer.Observe(octx)
	var observed []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range obs {
			v := string(r.Kvs[0].Value)
			observed = append(observed, v)
			// Tell the leader it was seen, so that it proclaims and resigns only then.
			if _, err := cli.Put(ctx, "/observed/"+v, ""); err != nil {
				return
			}
		}
	}()
	if err := contend("election"); err != nil {
		return err
	}
	ocancel()
	<-done
	// Each leader waits until the observer has seen it, so the observer sees every leader,
	// each followed at once by its proclaimed value.
	fmt.Printf("~ observed %v\n", observed)
	inOrder := len(observed) == 2*processes
	for i := 0; inOrder && i < len(observed); i += 2 {
		inOrder = observed[i+1] == observed[i]+"-proclaimed"
	}
	fmt.Printf("observed -> %d values, each leader then its proclamation: %t\n", len(observed), inOrder)
	return nil
}

func stmContention(cli *clientv3.Client) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	for i := 0; i < accounts; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("/accounts/%d", i), strconv.Itoa(accountStartBal)); err != nil {
			return err
		}
	}
	if err := contend("stm"); err != nil {
		return err
	}
	r, err := cli.Get(ctx, "/accounts/", clientv3.WithPrefix())
	if err != nil {
		return err
	}
	total := 0
	for _, kv := range r.Kvs {
		v, _ := strconv.Atoi(string(kv.Value))
		total += v
	}
	fmt.Printf("total -> %d (want %d)\n", total, accounts*accountStartBal)
	for _, iso := range []concurrency.Isolation{concurrency.SerializableSnapshot, concurrency.Serializable,
		concurrency.RepeatableReads, concurrency.ReadCommitted} {
		_, err := concurrency.NewSTM(cli, func(s concurrency.STM) error {
			s.Put("/stm/iso", s.Get("/accounts/0"))
			return nil
		}, concurrency.WithIsolation(iso))
		errLine(fmt.Sprintf("stm at isolation %d", iso), err)
	}
	return nil
}

// waitKey returns once key exists.
func waitKey(ctx context.Context, cli *clientv3.Client, key string) error {
	g, err := cli.Get(ctx, key)
	if err != nil || len(g.Kvs) > 0 {
		return err
	}
	for wr := range cli.Watch(ctx, key, clientv3.WithRev(g.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		if len(wr.Events) > 0 {
			return nil
		}
	}
	return ctx.Err()
}

func runChild(kind string, id int) error {
	cli, err := newClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := ctxTimeout()
	defer cancel()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		return err
	}
	defer s.Close()
	switch kind {
	case "mutex":
		m := concurrency.NewMutex(s, "/mutex/")
		lost := 0
		for i := 0; i < mutexRounds; i++ {
			if err := m.Lock(ctx); err != nil {
				return err
			}
			g, err := cli.Get(ctx, "/counter")
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(string(g.Kvs[0].Value))
			// Guarded by the lock and by the counter's own mod revision: a write that
			// fails here means someone else wrote while this process held the lock.
			t, err := cli.Txn(ctx).If(m.IsOwner(), clientv3.Compare(clientv3.ModRevision("/counter"), "=", g.Kvs[0].ModRevision)).
				Then(clientv3.OpPut("/counter", strconv.Itoa(n+1))).Commit()
			if err != nil {
				return err
			}
			if !t.Succeeded {
				lost++
			}
			if err := m.Unlock(ctx); err != nil {
				return err
			}
		}
		fmt.Printf("mutex process: %d rounds, %d writes refused\n", mutexRounds, lost)
	case "election":
		e := concurrency.NewElection(s, "/election/")
		val := fmt.Sprintf("candidate-%d", id)
		if err := e.Campaign(ctx, val); err != nil {
			return err
		}
		l, err := e.Leader(ctx)
		if err != nil {
			return err
		}
		if err := waitKey(ctx, cli, "/observed/"+val); err != nil {
			return err
		}
		if err := e.Proclaim(ctx, val+"-proclaimed"); err != nil {
			return err
		}
		if err := waitKey(ctx, cli, "/observed/"+val+"-proclaimed"); err != nil {
			return err
		}
		fmt.Printf("election process: leader is self=%t\n", string(l.Kvs[0].Value) == val)
		if err := e.Resign(ctx); err != nil {
			return err
		}
	case "stm":
		conflicts := 0
		for i := 0; i < stmTransfers; i++ {
			from, to := (id+i)%accounts, (id+i+1)%accounts
			attempts := 0
			_, err := concurrency.NewSTM(cli, func(s concurrency.STM) error {
				attempts++
				a, _ := strconv.Atoi(s.Get(fmt.Sprintf("/accounts/%d", from)))
				b, _ := strconv.Atoi(s.Get(fmt.Sprintf("/accounts/%d", to)))
				s.Put(fmt.Sprintf("/accounts/%d", from), strconv.Itoa(a-1))
				s.Put(fmt.Sprintf("/accounts/%d", to), strconv.Itoa(b+1))
				return nil
			}, concurrency.WithIsolation(concurrency.SerializableSnapshot))
			if err != nil {
				return err
			}
			conflicts += attempts - 1
		}
		fmt.Printf("stm process: %d transfers committed\n", stmTransfers)
		fmt.Fprintf(os.Stderr, "~ stm process %d: %d retries after conflicts\n", id, conflicts)
	default:
		return fmt.Errorf("unknown child kind %q", kind)
	}
	return nil
}
