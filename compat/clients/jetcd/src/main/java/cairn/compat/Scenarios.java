package cairn.compat;

import static java.nio.charset.StandardCharsets.UTF_8;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.Election;
import io.etcd.jetcd.KV;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.Lease;
import io.etcd.jetcd.Lock;
import io.etcd.jetcd.Watch;
import io.etcd.jetcd.cluster.Member;
import io.etcd.jetcd.cluster.MemberListResponse;
import io.etcd.jetcd.common.exception.CompactedException;
import io.etcd.jetcd.common.exception.EtcdException;
import io.etcd.jetcd.election.CampaignResponse;
import io.etcd.jetcd.election.LeaderKey;
import io.etcd.jetcd.election.LeaderResponse;
import io.etcd.jetcd.kv.DeleteResponse;
import io.etcd.jetcd.kv.GetResponse;
import io.etcd.jetcd.kv.PutResponse;
import io.etcd.jetcd.kv.TxnResponse;
import io.etcd.jetcd.lease.LeaseGrantResponse;
import io.etcd.jetcd.lease.LeaseKeepAliveResponse;
import io.etcd.jetcd.lease.LeaseTimeToLiveResponse;
import io.etcd.jetcd.lock.LockResponse;
import io.etcd.jetcd.maintenance.AlarmResponse;
import io.etcd.jetcd.maintenance.StatusResponse;
import io.etcd.jetcd.op.Cmp;
import io.etcd.jetcd.op.CmpTarget;
import io.etcd.jetcd.op.Op;
import io.etcd.jetcd.options.DeleteOption;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.LeaseOption;
import io.etcd.jetcd.options.PutOption;
import io.etcd.jetcd.options.WatchOption;
import io.etcd.jetcd.watch.WatchEvent;
import io.etcd.jetcd.watch.WatchResponse;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.logging.Level;
import java.util.logging.LogManager;
import java.util.logging.Logger;
import java.util.stream.Collectors;

/**
 * jetcd scenarios for compat/clients. Usage: java -jar JAR HOST PORT
 *
 * <p>Same block format as the python clients: "## scenario NAME [needs=FEATURE]", then
 * deterministic lines; "~ " lines are informational and not compared; "ERROR CLASS MESSAGE"
 * for an unexpected exception (the scenario stops, the next one runs). Expected errors print
 * "-> EXC CLASS MESSAGE code=GRPC_CODE". Lease IDs are random: the n-th lease granted is shown
 * as {@code <Ln>} (also inside lock and election keys, which end in the lease ID in hex).
 * Every wait is bounded and waits on an event, never on a sleep; a watchdog ends the process
 * after 60 s.
 */
public final class Scenarios {
    static final long WAIT_S = 10;
    static final Map<Long, String> LEASES = new LinkedHashMap<>();

    static Client client;
    static KV kv;
    static String endpoint;

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java -jar JAR HOST PORT");
            System.exit(2);
        }
        quietJul();
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(60_000);
            } catch (InterruptedException e) {
                return;
            }
            System.out.println("ERROR watchdog: still running after 60 s, exiting");
            System.out.flush();
            Runtime.getRuntime().halt(3);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();

        endpoint = "http://" + args[0] + ":" + args[1];
        client = Client.builder().endpoints(endpoint).connectTimeout(java.time.Duration.ofSeconds(5)).build();
        kv = client.getKVClient();

        scenario("kv", Scenarios::kvBasic);
        scenario("kv-txn", Scenarios::kvTxn);
        scenario("watch", Scenarios::watch);
        scenario("watch-compacted", Scenarios::watchCompacted);
        scenario("lease", Scenarios::lease);
        scenario("cluster", Scenarios::cluster);
        scenario("maintenance", Scenarios::maintenance);
        scenario("errors", Scenarios::errors);
        // Last: they write keys only where Lock/Election exist, which would shift the
        // revisions printed by any scenario after them.
        scenario("lock needs=Lock", Scenarios::lock);
        scenario("election needs=Election", Scenarios::election);

        System.out.flush();
        try {
            client.close();
        } catch (Throwable t) {
            // closing is not part of any scenario
        }
        System.exit(0);
    }

    interface Body {
        void run() throws Exception;
    }

    static void scenario(String name, Body body) {
        System.out.println("## scenario " + name);
        try {
            body.run();
        } catch (Throwable t) {
            System.out.println("ERROR " + err(t));
        }
        System.out.flush();
    }

    /** grpc-java and Netty may log through java.util.logging (stderr, which run merges). */
    static void quietJul() {
        LogManager.getLogManager().reset();
        Logger.getLogger("").setLevel(Level.OFF);
    }

    // ------------------------------------------------------------------ helpers

    static ByteSequence b(String s) {
        return ByteSequence.from(s, UTF_8);
    }

    static String s(ByteSequence b) {
        return b == null ? "null" : b.toString(UTF_8);
    }

    static <T> T await(CompletableFuture<T> f) throws Exception {
        return f.get(WAIT_S, TimeUnit.SECONDS);
    }

    static String leaseName(long id) {
        if (id == 0) {
            return "0";
        }
        String n = LEASES.get(id);
        return n != null ? n : Long.toString(id);
    }

    static long grant(long ttl) throws Exception {
        LeaseGrantResponse g = await(client.getLeaseClient().grant(ttl));
        String name = "<L" + (LEASES.size() + 1) + ">";
        LEASES.put(g.getID(), name);
        System.out.println("grant ttl=" + ttl + " -> " + name + " TTL=" + g.getTTL());
        return g.getID();
    }

    /** Lock and election keys end in the owner's lease ID in hex. */
    static String names(String key) {
        for (Map.Entry<Long, String> e : LEASES.entrySet()) {
            key = key.replace(Long.toHexString(e.getKey()), e.getValue());
        }
        return key;
    }

    static String kv(KeyValue x) {
        return String.format("key=%s value=%s create=%d mod=%d ver=%d lease=%s", names(s(x.getKey())),
            q(s(x.getValue())), x.getCreateRevision(), x.getModRevision(), x.getVersion(), leaseName(x.getLease()));
    }

    static String kvs(List<KeyValue> l) {
        return l.stream().map(Scenarios::kv).collect(Collectors.joining("; ", "[", "]"));
    }

    static String q(String s) {
        return "'" + s + "'";
    }

    static Throwable unwrap(Throwable t) {
        while ((t instanceof ExecutionException || t instanceof CompletionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }

    static String err(Throwable t) {
        t = unwrap(t);
        String code = "";
        if (t instanceof EtcdException) {
            code = " code=" + ((EtcdException) t).getErrorCode();
        } else if (t instanceof StatusRuntimeException) {
            code = " code=" + ((StatusRuntimeException) t).getStatus().getCode();
        }
        if (t instanceof CompactedException) {
            code += " compactedRevision=" + ((CompactedException) t).getCompactedRevision();
        }
        return t.getClass().getName() + " " + q(String.valueOf(t.getMessage())) + code;
    }

    /** Runs an expected-to-fail (or maybe-failing) call and prints its result or exception. */
    static <T> void attempt(String what, CompletableFuture<T> f, java.util.function.Function<T, String> show) {
        try {
            T r = await(f);
            System.out.println(what + " -> " + show.apply(r));
        } catch (Throwable t) {
            System.out.println(what + " -> EXC " + err(t));
        }
    }

    /** Collects watch responses; waits on its monitor, bounded. */
    static final class Collector implements Watch.Listener {
        final List<WatchEvent> events = new ArrayList<>();
        final List<Integer> perResponse = new ArrayList<>();
        boolean created;
        Throwable error;
        boolean completed;

        @Override
        public synchronized void onNext(WatchResponse r) {
            if (r.isCreatedNotify()) {
                created = true;
            }
            if (!r.getEvents().isEmpty()) {
                events.addAll(r.getEvents());
                perResponse.add(r.getEvents().size());
            }
            notifyAll();
        }

        @Override
        public synchronized void onError(Throwable t) {
            error = t;
            notifyAll();
        }

        @Override
        public synchronized void onCompleted() {
            completed = true;
            notifyAll();
        }

        synchronized boolean waitFor(Predicate<Collector> p) throws InterruptedException {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
            while (!p.test(this)) {
                long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
                if (left <= 0) {
                    System.out.println("timed out waiting (" + WAIT_S + " s); got " + events.size() + " events"
                        + (error != null ? ", error " + err(error) : ""));
                    return false;
                }
                wait(left);
            }
            return true;
        }

        synchronized boolean hasValue(String v) {
            return events.stream().anyMatch(e -> s(e.getKeyValue().getValue()).equals(v));
        }

        synchronized boolean hasPutOf(String key) {
            return events.stream()
                .anyMatch(e -> e.getEventType() == WatchEvent.EventType.PUT && s(e.getKeyValue().getKey()).equals(key));
        }

        synchronized List<String> lines() {
            return events.stream().map(Scenarios::ev).collect(Collectors.toList());
        }
    }

    static String ev(WatchEvent e) {
        KeyValue k = e.getKeyValue();
        String line = String.format("%s key=%s value=%s create=%d mod=%d ver=%d lease=%s", e.getEventType(),
            names(s(k.getKey())), q(s(k.getValue())), k.getCreateRevision(), k.getModRevision(), k.getVersion(),
            leaseName(k.getLease()));
        KeyValue p = e.getPrevKV();
        // jetcd gives an empty KeyValue when the event has no prev_kv.
        if (p != null && !p.getKey().isEmpty()) {
            line += String.format(" prev=(value=%s create=%d mod=%d ver=%d lease=%s)", q(s(p.getValue())),
                p.getCreateRevision(), p.getModRevision(), p.getVersion(), leaseName(p.getLease()));
        } else {
            line += " prev=none";
        }
        return line;
    }

    static Watch.Watcher watch(String key, WatchOption opt, Collector c) {
        return client.getWatchClient().watch(b(key), opt, c);
    }

    // ------------------------------------------------------------------ kv

    static void kvBasic() throws Exception {
        for (String[] p : new String[][] {{"a/1", "one"}, {"a/2", "two"}, {"a/3", "three"}, {"b/1", "bee"}}) {
            PutResponse r = await(kv.put(b(p[0]), b(p[1])));
            System.out.println("put " + p[0] + " -> rev=" + r.getHeader().getRevision() + " hasPrevKv=" + r.hasPrevKv());
        }
        GetResponse g = await(kv.get(b("a/1")));
        System.out.println("get a/1 -> count=" + g.getCount() + " more=" + g.isMore() + " rev=" + g.getHeader().getRevision()
            + " " + kvs(g.getKvs()));
        g = await(kv.get(b("missing")));
        System.out.println("get missing -> count=" + g.getCount() + " " + kvs(g.getKvs()));
        PutResponse pr = await(kv.put(b("a/1"), b("uno"), PutOption.builder().withPrevKV().build()));
        System.out.println("put a/1 prevKv -> rev=" + pr.getHeader().getRevision() + " hasPrevKv=" + pr.hasPrevKv()
            + " prev=" + kv(pr.getPrevKv()));
        pr = await(kv.put(b("a/new"), b("n"), PutOption.builder().withPrevKV().build()));
        System.out.println("put a/new prevKv -> rev=" + pr.getHeader().getRevision() + " hasPrevKv=" + pr.hasPrevKv());
        g = await(kv.get(b("a/"), GetOption.builder().isPrefix(true).build()));
        System.out.println("get prefix a/ -> count=" + g.getCount() + " more=" + g.isMore());
        for (KeyValue x : g.getKvs()) {
            System.out.println("   " + kv(x));
        }
        g = await(kv.get(b("a/"), GetOption.builder().isPrefix(true).withLimit(2).build()));
        System.out.println("get prefix a/ limit 2 -> count=" + g.getCount() + " more=" + g.isMore() + " keys="
            + g.getKvs().stream().map(x -> s(x.getKey())).collect(Collectors.toList()));
        g = await(kv.get(b("a/"), GetOption.builder().isPrefix(true).withSortField(GetOption.SortTarget.VALUE)
            .withSortOrder(GetOption.SortOrder.DESCEND).withKeysOnly(true).build()));
        System.out.println("get prefix a/ by value desc keysOnly -> "
            + g.getKvs().stream().map(x -> s(x.getKey()) + "=" + q(s(x.getValue()))).collect(Collectors.toList()));
        g = await(kv.get(b("a/"), GetOption.builder().isPrefix(true).withCountOnly(true).build()));
        System.out.println("get prefix a/ countOnly -> count=" + g.getCount() + " kvs=" + g.getKvs().size());
        g = await(kv.get(b("a/2"), GetOption.builder().withRange(b("b/2")).build()));
        System.out.println("get range [a/2, b/2) -> "
            + g.getKvs().stream().map(x -> s(x.getKey())).collect(Collectors.toList()));
        g = await(kv.get(b("a/1"), GetOption.builder().withRevision(1).build()));
        System.out.println("get a/1 at rev 1 -> " + kvs(g.getKvs()));
        g = await(kv.get(b("a/1"), GetOption.builder().withRevision(2).build()));
        System.out.println("get a/1 at rev 2 -> " + kvs(g.getKvs()) + " header.rev=" + g.getHeader().getRevision());
        DeleteResponse d = await(kv.delete(b("a/2"), DeleteOption.builder().withPrevKV(true).build()));
        System.out.println("delete a/2 prevKv -> deleted=" + d.getDeleted() + " rev=" + d.getHeader().getRevision()
            + " prev=" + kvs(d.getPrevKvs()));
        d = await(kv.delete(b("a/2")));
        System.out.println("delete a/2 again -> deleted=" + d.getDeleted() + " rev=" + d.getHeader().getRevision());
        d = await(kv.delete(b("a/"), DeleteOption.builder().isPrefix(true).withPrevKV(true).build()));
        System.out.println("delete prefix a/ prevKv -> deleted=" + d.getDeleted() + " rev=" + d.getHeader().getRevision()
            + " prev=" + kvs(d.getPrevKvs()));
        g = await(kv.get(b("\0"), GetOption.builder().withRange(b("\0")).build()));
        System.out.println("get all -> count=" + g.getCount() + " " + kvs(g.getKvs()));
    }

    static String txnResp(TxnResponse r) {
        List<String> parts = new ArrayList<>();
        for (PutResponse p : r.getPutResponses()) {
            parts.add("put(rev=" + p.getHeader().getRevision() + " prev=" + (p.hasPrevKv() ? kv(p.getPrevKv()) : "none") + ")");
        }
        for (GetResponse g : r.getGetResponses()) {
            parts.add("get(count=" + g.getCount() + " " + kvs(g.getKvs()) + ")");
        }
        for (DeleteResponse d : r.getDeleteResponses()) {
            parts.add("delete(deleted=" + d.getDeleted() + " prev=" + kvs(d.getPrevKvs()) + ")");
        }
        for (TxnResponse t : r.getTxnResponses()) {
            parts.add("txn(succeeded=" + t.isSucceeded() + " " + txnResp(t) + ")");
        }
        return "succeeded=" + r.isSucceeded() + " rev=" + r.getHeader().getRevision() + " " + parts;
    }

    static void kvTxn() throws Exception {
        await(kv.put(b("t/k"), b("v1")));
        long mod = await(kv.put(b("t/k"), b("v2"))).getHeader().getRevision();
        System.out.println("t/k v2 at rev " + mod);
        TxnResponse r = await(kv.txn()
            .If(new Cmp(b("t/k"), Cmp.Op.EQUAL, CmpTarget.value(b("v2"))),
                new Cmp(b("t/k"), Cmp.Op.EQUAL, CmpTarget.version(2)),
                new Cmp(b("t/k"), Cmp.Op.EQUAL, CmpTarget.modRevision(mod)))
            .Then(Op.put(b("t/k"), b("v3"), PutOption.builder().withPrevKV().build()),
                Op.get(b("t/k"), GetOption.DEFAULT))
            .Else(Op.put(b("t/fail"), b("1"), PutOption.DEFAULT))
            .commit());
        System.out.println("txn value==v2 && version==2 && mod==" + mod + " -> " + txnResp(r));
        r = await(kv.txn()
            .If(new Cmp(b("t/k"), Cmp.Op.LESS, CmpTarget.modRevision(mod)))
            .Then(Op.put(b("t/then"), b("x"), PutOption.DEFAULT))
            .Else(Op.get(b("t/"), GetOption.builder().isPrefix(true).build()),
                Op.delete(b("t/k"), DeleteOption.builder().withPrevKV(true).build()))
            .commit());
        System.out.println("txn mod<" + mod + " -> " + txnResp(r));
        r = await(kv.txn()
            .If(new Cmp(b("t/k"), Cmp.Op.EQUAL, CmpTarget.createRevision(0)),
                new Cmp(b("t/zz"), Cmp.Op.NOT_EQUAL, CmpTarget.value(b("q"))))
            .Then(Op.put(b("t/k"), b("again"), PutOption.DEFAULT))
            .Else(Op.get(b("t/k"), GetOption.DEFAULT))
            .commit());
        System.out.println("txn create==0 && t/zz!=q (missing key) -> " + txnResp(r));
        await(kv.put(b("t/k"), b("b")));
        r = await(kv.txn()
            .If(new Cmp(b("t/k"), Cmp.Op.GREATER, CmpTarget.value(b("a"))))
            .Then(Op.txn(new Cmp[] {new Cmp(b("t/k"), Cmp.Op.EQUAL, CmpTarget.version(99))},
                new Op[] {Op.put(b("t/inner"), b("then"), PutOption.DEFAULT)},
                new Op[] {Op.put(b("t/inner"), b("else"), PutOption.DEFAULT),
                    Op.get(b("t/inner"), GetOption.DEFAULT)}))
            .commit());
        System.out.println("txn nested -> " + txnResp(r));
        r = await(kv.txn().commit());
        System.out.println("txn empty -> " + txnResp(r));
    }

    // ------------------------------------------------------------------ watch

    static void watch() throws Exception {
        Collector all = new Collector();
        Watch.Watcher w1 = watch("w/", WatchOption.builder().isPrefix(true).withPrevKV(true).withCreateNotify(true).build(), all);
        all.waitFor(c -> c.created || c.error != null);
        System.out.println("prefix watch created notify: " + all.created);
        long first = await(kv.put(b("w/a"), b("1"))).getHeader().getRevision();
        await(kv.put(b("w/b"), b("2")));
        await(kv.put(b("w/a"), b("11")));
        await(kv.put(b("wx"), b("outside")));
        await(kv.delete(b("w/b")));
        await(kv.delete(b("w/"), DeleteOption.builder().isPrefix(true).build()));
        long end = await(kv.put(b("w/end"), b("end"))).getHeader().getRevision();
        System.out.println("writes at revs " + first + ".." + end);
        all.waitFor(c -> c.hasValue("end") || c.error != null);
        w1.close();
        synchronized (all) {
            for (String l : all.lines()) {
                System.out.println("prefix w/ prevKv | " + l);
            }
            System.out.println("~ events per response " + all.perResponse);
            System.out.println("error: " + (all.error == null ? "none" : err(all.error)));
        }

        // Replay from a past revision on one key, with prevKv; then PUT-only and DELETE-only filters.
        Collector replay = new Collector();
        Collector noDel = new Collector();
        Collector noPut = new Collector();
        Watch.Watcher w2 = watch("w/a", WatchOption.builder().withRevision(first).withPrevKV(true).build(), replay);
        Watch.Watcher w3 = watch("w/", WatchOption.builder().isPrefix(true).withRevision(first).withNoDelete(true).build(), noDel);
        Watch.Watcher w4 = watch("w/", WatchOption.builder().isPrefix(true).withRevision(first).withNoPut(true).build(), noPut);
        replay.waitFor(c -> c.events.size() >= 3 || c.error != null);
        noDel.waitFor(c -> c.hasValue("end") || c.error != null);
        noPut.waitFor(c -> c.events.size() >= 2 || c.error != null);
        w2.close();
        w3.close();
        w4.close();
        for (Object[] p : new Object[][] {{"replay w/a from " + first, replay}, {"replay w/ noDelete", noDel},
            {"replay w/ noPut", noPut}}) {
            Collector c = (Collector) p[1];
            synchronized (c) {
                for (String l : c.lines()) {
                    System.out.println(p[0] + " | " + l);
                }
                if (c.error != null) {
                    System.out.println(p[0] + " error: " + err(c.error));
                }
            }
        }

        // A range watch [w/b, w/d) from the start.
        Collector range = new Collector();
        Watch.Watcher w5 = watch("w/b", WatchOption.builder().withRange(b("w/d")).withRevision(1).build(), range);
        range.waitFor(c -> c.events.size() >= 2 || c.error != null);
        w5.close();
        synchronized (range) {
            for (String l : range.lines()) {
                System.out.println("range [w/b, w/d) from 1 | " + l);
            }
        }
    }

    static void watchCompacted() throws Exception {
        long r1 = await(kv.put(b("wc/k"), b("a"))).getHeader().getRevision();
        await(kv.put(b("wc/k"), b("b")));
        long r3 = await(kv.put(b("wc/k"), b("c"))).getHeader().getRevision();
        await(kv.compact(r3));
        System.out.println("compacted at rev " + r3);
        Collector old = new Collector();
        Watch.Watcher w = watch("wc/k", WatchOption.builder().withRevision(r1).build(), old);
        old.waitFor(c -> c.error != null || !c.events.isEmpty());
        w.close();
        synchronized (old) {
            System.out.println("watch from rev " + r1 + " (compacted) -> events " + old.lines() + " error "
                + (old.error == null ? "none" : err(old.error)));
        }
        Collector at = new Collector();
        w = watch("wc/k", WatchOption.builder().withRevision(r3).build(), at);
        at.waitFor(c -> c.error != null || !c.events.isEmpty());
        w.close();
        synchronized (at) {
            System.out.println("watch from rev " + r3 + " (compact point) -> events " + at.lines() + " error "
                + (at.error == null ? "none" : err(at.error)));
        }
    }

    // ------------------------------------------------------------------ lease

    static void lease() throws Exception {
        Lease lc = client.getLeaseClient();
        long t0 = System.nanoTime();
        long id = grant(60);
        await(kv.put(b("l/a"), b("1"), PutOption.builder().withLeaseId(id).build()));
        await(kv.put(b("l/b"), b("2"), PutOption.builder().withLeaseId(id).build()));
        await(kv.put(b("l/c"), b("3")));
        for (KeyValue x : await(kv.get(b("l/"), GetOption.builder().isPrefix(true).build())).getKvs()) {
            System.out.println("get " + kv(x));
        }
        LeaseKeepAliveResponse ka = await(lc.keepAliveOnce(id));
        System.out.println("keepAliveOnce -> id=" + leaseName(ka.getID()) + " TTL=" + ka.getTTL());
        LeaseTimeToLiveResponse ttl = await(lc.timeToLive(id, LeaseOption.builder().withAttachedKeys().build()));
        System.out.println("timeToLive keys -> id=" + leaseName(ttl.getID()) + " grantedTTL=" + ttl.getGrantedTTL()
            + " ttl in (0,60]: " + (ttl.getTTL() > 0 && ttl.getTTL() <= 60) + " keys="
            + ttl.getKeys().stream().map(Scenarios::s).sorted().collect(Collectors.toList()));
        System.out.println(String.format("~ TTL=%d elapsed %.2f s", ttl.getTTL(), (System.nanoTime() - t0) / 1e9));
        ttl = await(lc.timeToLive(id, LeaseOption.DEFAULT));
        System.out.println("timeToLive no keys -> keys=" + ttl.getKeys().size());

        Collector c = new Collector();
        long now = await(kv.get(b("l/a"))).getHeader().getRevision();
        Watch.Watcher w = watch("l/", WatchOption.builder().isPrefix(true).withPrevKV(true).withRevision(now + 1).build(), c);
        System.out.println("revoke -> rev=" + await(lc.revoke(id)).getHeader().getRevision());
        await(kv.put(b("l/z"), b("end")));
        c.waitFor(x -> x.hasValue("end") || x.error != null);
        w.close();
        synchronized (c) {
            for (String l : c.lines()) {
                System.out.println("watch l/ | " + l);
            }
        }
        for (String k : new String[] {"l/a", "l/b", "l/c"}) {
            GetResponse g = await(kv.get(b(k)));
            System.out.println("get " + k + " after revoke -> count=" + g.getCount() + " " + kvs(g.getKvs()));
        }
        attempt("timeToLive revoked", lc.timeToLive(id, LeaseOption.builder().withAttachedKeys().build()),
            r -> "TTL=" + r.getTTL() + " grantedTTL=" + r.getGrantedTTL() + " keys=" + r.getKeys().size());
        attempt("keepAliveOnce revoked", lc.keepAliveOnce(id), r -> "TTL=" + r.getTTL());
        attempt("revoke again", lc.revoke(id), r -> "ok");
        attempt("put with revoked lease", kv.put(b("l/d"), b("4"), PutOption.builder().withLeaseId(id).build()),
            r -> "rev=" + r.getHeader().getRevision());
    }

    // ------------------------------------------------------------------ lock

    /** Lock's waiters write their key (NAME/LEASE_HEX) before they block: a watch sees it. */
    static void lock() throws Exception {
        Lock lk = client.getLockClient();
        long l1 = grant(60);
        long l2 = grant(60);
        long l3 = grant(60);
        LockResponse r1 = await(lk.lock(b("lk/name"), l1));
        System.out.println("lock 1 -> key=" + names(s(r1.getKey())) + " rev=" + r1.getHeader().getRevision());
        GetResponse g = await(kv.get(b("lk/name/"), GetOption.builder().isPrefix(true).build()));
        System.out.println("keys under lk/name/ -> " + kvs(g.getKvs()));

        Collector c = new Collector();
        Watch.Watcher w = watch("lk/name/", WatchOption.builder().isPrefix(true)
            .withRevision(g.getHeader().getRevision() + 1).build(), c);
        CompletableFuture<LockResponse> f2 = lk.lock(b("lk/name"), l2);
        String k2 = "lk/name/" + Long.toHexString(l2);
        c.waitFor(x -> x.hasPutOf(k2) || x.error != null);
        System.out.println("lock 2 key written: " + c.hasPutOf(k2) + ", lock 2 still blocked: " + !f2.isDone());
        UnlockResponseLine.print("unlock 1", lk.unlock(r1.getKey()));
        LockResponse r2 = await(f2);
        System.out.println("lock 2 -> key=" + names(s(r2.getKey())) + " rev=" + r2.getHeader().getRevision());

        CompletableFuture<LockResponse> f3 = lk.lock(b("lk/name"), l3);
        String k3 = "lk/name/" + Long.toHexString(l3);
        c.waitFor(x -> x.hasPutOf(k3) || x.error != null);
        System.out.println("lock 3 key written: " + c.hasPutOf(k3) + ", lock 3 still blocked: " + !f3.isDone());
        System.out.println("revoke <L2> -> rev=" + await(client.getLeaseClient().revoke(l2)).getHeader().getRevision());
        LockResponse r3 = await(f3);
        System.out.println("lock 3 (after holder's lease revoked) -> key=" + names(s(r3.getKey())) + " rev="
            + r3.getHeader().getRevision());
        UnlockResponseLine.print("unlock 3", lk.unlock(r3.getKey()));
        UnlockResponseLine.print("unlock 3 again", lk.unlock(r3.getKey()));
        w.close();
        synchronized (c) {
            for (String l : c.lines()) {
                System.out.println("watch lk/name/ | " + l);
            }
        }
        attempt("lock with unknown lease", lk.lock(b("lk/other"), 12345), r -> "key=" + names(s(r.getKey())));
        await(client.getLeaseClient().revoke(l1));
        await(client.getLeaseClient().revoke(l3));
    }

    static final class UnlockResponseLine {
        static void print(String what, CompletableFuture<io.etcd.jetcd.lock.UnlockResponse> f) {
            attempt(what, f, r -> "rev=" + r.getHeader().getRevision());
        }
    }

    // ------------------------------------------------------------------ election

    static final class Observer implements Election.Listener {
        final List<KeyValue> seen = new ArrayList<>();
        Throwable error;

        @Override
        public synchronized void onNext(LeaderResponse r) {
            seen.add(r.getKv());
            notifyAll();
        }

        @Override
        public synchronized void onError(Throwable t) {
            error = t;
            notifyAll();
        }

        @Override
        public synchronized void onCompleted() {
            notifyAll();
        }

        synchronized boolean waitValue(String v) throws InterruptedException {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
            while (seen.stream().noneMatch(k -> s(k.getValue()).equals(v)) && error == null) {
                long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
                if (left <= 0) {
                    System.out.println("timed out waiting for observed value " + q(v) + "; seen " + seen.size());
                    return false;
                }
                wait(left);
            }
            return error == null;
        }
    }

    static String leaderKey(LeaderKey k) {
        return "name=" + s(k.getName()) + " key=" + names(s(k.getKey())) + " rev=" + k.getRevision() + " lease="
            + leaseName(k.getLease());
    }

    static void election() throws Exception {
        Election el = client.getElectionClient();
        ByteSequence name = b("el/name");
        long l1 = grant(60);
        long l2 = grant(60);
        CampaignResponse c1 = await(el.campaign(name, l1, b("v1")));
        LeaderKey k1 = c1.getLeader();
        System.out.println("campaign 1 -> " + leaderKey(k1));
        System.out.println("leader -> " + kv(await(el.leader(name)).getKv()));

        Observer obs = new Observer();
        el.observe(name, obs);
        obs.waitValue("v1");
        attempt("proclaim v2", el.proclaim(k1, b("v2")), r -> "rev=" + r.getHeader().getRevision());
        obs.waitValue("v2");
        System.out.println("leader -> " + kv(await(el.leader(name)).getKv()));

        Collector c = new Collector();
        long now = await(kv.get(name)).getHeader().getRevision();
        Watch.Watcher w = watch("el/name/", WatchOption.builder().isPrefix(true).withRevision(now + 1).build(), c);
        CompletableFuture<CampaignResponse> f2 = el.campaign(name, l2, b("w1"));
        String k2 = "el/name/" + Long.toHexString(l2);
        c.waitFor(x -> x.hasPutOf(k2) || x.error != null);
        System.out.println("campaign 2 key written: " + c.hasPutOf(k2) + ", campaign 2 still blocked: " + !f2.isDone());
        attempt("resign 1", el.resign(k1), r -> "rev=" + r.getHeader().getRevision());
        LeaderKey k2l = await(f2).getLeader();
        System.out.println("campaign 2 -> " + leaderKey(k2l));
        obs.waitValue("w1");
        System.out.println("leader -> " + kv(await(el.leader(name)).getKv()));
        attempt("proclaim with resigned key 1", el.proclaim(k1, b("stale")), r -> "rev=" + r.getHeader().getRevision());
        attempt("resign 2", el.resign(k2l), r -> "rev=" + r.getHeader().getRevision());
        attempt("leader after resign", el.leader(name), r -> kv(r.getKv()));
        attempt("leader of unknown election", el.leader(b("el/none")), r -> kv(r.getKv()));
        attempt("campaign with unknown lease", el.campaign(b("el/other"), 12345, b("x")),
            r -> leaderKey(r.getLeader()));
        w.close();
        synchronized (c) {
            for (String l : c.lines()) {
                System.out.println("watch el/name/ | " + l);
            }
        }
        synchronized (obs) {
            for (KeyValue k : obs.seen) {
                System.out.println("observe | " + kv(k));
            }
            if (obs.error != null) {
                System.out.println("observe error: " + err(obs.error));
            }
        }
        await(client.getLeaseClient().revoke(l1));
        await(client.getLeaseClient().revoke(l2));
    }

    // ------------------------------------------------------------------ cluster, maintenance

    static void cluster() throws Exception {
        MemberListResponse r = await(client.getClusterClient().listMember());
        System.out.println("members: " + r.getMembers().size());
        for (Member m : r.getMembers()) {
            System.out.println("member name=" + m.getName() + " peerURIs=" + m.getPeerURIs() + " clientURIs="
                + m.getClientURIs() + " learner=" + m.isLearner() + " id nonzero: " + (m.getId() != 0)
                + " id == header.memberId: " + (m.getId() == r.getHeader().getMemberId()));
        }
        System.out.println("header clusterId nonzero: " + (r.getHeader().getClusterId() != 0));
    }

    static void maintenance() throws Exception {
        MemberListResponse ml = await(client.getClusterClient().listMember());
        long member = ml.getMembers().get(0).getId();
        StatusResponse st = await(client.getMaintenanceClient().statusMember(endpoint));
        System.out.println("~ status version=" + st.getVersion() + " dbSize=" + st.getDbSize() + " dbSizeInUse="
            + st.getDbSizeInUse() + " raftIndex=" + st.getRaftIndex() + " raftTerm=" + st.getRaftTerm()
            + " raftAppliedIndex=" + st.getRaftAppliedIndex());
        System.out.println("status version 3.x: " + st.getVersion().startsWith("3.") + " leader == member id: "
            + (st.getLeader() == member) + " leader == header.memberId: " + (st.getLeader() == st.getHeader().getMemberId())
            + " dbSize > 0: " + (st.getDbSize() > 0) + " raftIndex > 0: " + (st.getRaftIndex() > 0) + " raftTerm > 0: "
            + (st.getRaftTerm() > 0) + " learner: " + st.isLearner() + " errors: " + st.getErrorList());
        AlarmResponse al = await(client.getMaintenanceClient().listAlarms());
        System.out.println("alarms: " + al.getAlarms().size());
    }

    // ------------------------------------------------------------------ errors

    static void errors() throws Exception {
        long rev = await(kv.put(b("e/k"), b("v"))).getHeader().getRevision();
        System.out.println("put e/k -> rev=" + rev);
        attempt("get at future revision rev+100", kv.get(b("e/k"), GetOption.builder().withRevision(rev + 100).build()),
            r -> kvs(r.getKvs()));
        attempt("compact future revision rev+100", kv.compact(rev + 100), r -> "ok");
        attempt("compact rev", kv.compact(rev), r -> "ok rev=" + r.getHeader().getRevision());
        attempt("compact rev-1 (already compacted)", kv.compact(rev - 1), r -> "ok");
        attempt("get at compacted revision rev-1", kv.get(b("e/k"), GetOption.builder().withRevision(rev - 1).build()),
            r -> kvs(r.getKvs()));
        attempt("put with unknown lease", kv.put(b("e/l"), b("v"), PutOption.builder().withLeaseId(12345).build()),
            r -> "rev=" + r.getHeader().getRevision());
        attempt("txn with duplicate key", kv.txn().Then(Op.put(b("e/d"), b("1"), PutOption.DEFAULT),
            Op.put(b("e/d"), b("2"), PutOption.DEFAULT)).commit(), Scenarios::txnResp);
        attempt("keepAliveOnce unknown lease", client.getLeaseClient().keepAliveOnce(12345), r -> "TTL=" + r.getTTL());
        attempt("timeToLive unknown lease", client.getLeaseClient().timeToLive(12345, LeaseOption.DEFAULT),
            r -> "TTL=" + r.getTTL() + " grantedTTL=" + r.getGrantedTTL());
        attempt("revoke unknown lease", client.getLeaseClient().revoke(12345), r -> "ok");
    }
}
