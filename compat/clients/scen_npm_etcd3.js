'use strict';
// npm etcd3 1.1.2 (microsoft/etcd3, @grpc/grpc-js) scenarios.
// Usage: node scen_npm_etcd3.js HOST PORT
//
// Module resolution: `etcd3` is resolved explicitly from the directory that
// compat/clients/npm/install fills, compat/.work/clients/npm/node_modules
// (override the directory with NPM_DIR=DIR, which must hold node_modules/);
// NODE_PATH is not needed and not used. Run compat/clients/npm/install first.
//
// Same block format as scen_etcd3.py / scen_aetcd.py: "## scenario NAME
// [needs=FEATURE]", then deterministic lines; "~ " lines are informational and
// not compared; an unexpected exception prints "ERROR <class> <message>" and
// the script goes on with the next scenario. Lease IDs are random: the n-th
// lease seen is printed as <Ln>. Every wait is on an event (watch event,
// campaign/observer event, lock key deletion) and bounded (WAIT_MS); no sleep
// is used to synchronise. The client is closed at the end and the process
// exits on its own: a watchdog ends it after 55 s in any case, and if
// something is still pending 5 s after close a "~ forced exit" line says what
// and it exits. (etcd3 1.1.2 re-arms a lease's 10 s keep-alive timer when a
// keep-alive answer arrives after the lease was revoked, which Lock's
// acquire-then-release can hit; whether it does is a matter of timing.)
// SCENARIOS=NAME,NAME runs only those scenarios (debugging).

const path = require('path');
const { createRequire } = require('module');

const NPM_DIR = process.env.NPM_DIR || path.join(__dirname, '..', '.work', 'clients', 'npm');
let etcd3;
try {
  etcd3 = createRequire(path.join(path.resolve(NPM_DIR), 'package.json'))('etcd3');
} catch (e) {
  console.error(`scen_npm_etcd3: cannot load etcd3 from ${NPM_DIR}/node_modules ` +
    `(run compat/clients/npm/install): ${e.message}`);
  process.exit(2);
}
const { Etcd3 } = etcd3;

if (process.argv.length !== 4) {
  console.error('usage: node scen_npm_etcd3.js HOST PORT');
  process.exit(2);
}
const [host, port] = process.argv.slice(2);
const WAIT_MS = 10000;

const watchdog = setTimeout(() => {
  out('ERROR Watchdog the scenarios did not finish within 55 s');
  process.exit(1);
}, 55000);
watchdog.unref();

function out(...parts) {
  process.stdout.write(parts.map(p => String(p)).join(' ') + '\n');
}

// ------------------------------------------------------------------ helpers
const LEASES = new Map(); // lease id (string) -> "<Ln>"
function leaseName(id) {
  id = String(id);
  if (id === '0') return '0';
  if (!LEASES.has(id)) LEASES.set(id, `<L${LEASES.size + 1}>`);
  return LEASES.get(id);
}
function norm(s) {
  s = String(s);
  for (const [id, name] of LEASES) s = s.split(id).join(name);
  return s;
}
function errText(e) {
  const cls = e && e.constructor ? e.constructor.name : typeof e;
  let s = `${cls} ${norm(e && e.message !== undefined ? e.message : e)}`;
  if (e instanceof TypeError || e instanceof ReferenceError || e instanceof RangeError) {
    const m = /scen_npm_etcd3\.js:(\d+)/.exec(String(e.stack));
    if (m) s += ` at line ${m[1]}`;
  }
  return s;
}
// An expected failure: "NAME -> <class> <message>"; success prints the value.
async function attempt(name, fn, show = v => String(v)) {
  try {
    const v = await fn();
    out(name, '->', 'ok', show(v));
  } catch (e) {
    out(name, '->', errText(e));
  }
}
const str = b => (b === null || b === undefined ? String(b) : Buffer.from(b).toString());
function kv(x) {
  if (!x) return String(x);
  return `key=${str(x.key)} value=${JSON.stringify(str(x.value))} create=${x.create_revision} ` +
    `mod=${x.mod_revision} ver=${x.version} lease=${leaseName(x.lease)}`;
}
function evText(ev) {
  let s = `${ev.type} ${kv(ev.kv)}`;
  if (ev.prev_kv) s += ` prev=(value=${JSON.stringify(str(ev.prev_kv.value))} mod=${ev.prev_kv.mod_revision} ver=${ev.prev_kv.version})`;
  return s;
}
function showOp(r) {
  const which = r.response || Object.keys(r).find(k => k.startsWith('response_') && r[k]);
  const x = r[which];
  switch (which) {
    case 'response_put':
      return `put(rev=${x.header.revision} prev=${x.prev_kv ? kv(x.prev_kv) : 'none'})`;
    case 'response_range':
      return `range(count=${x.count} more=${x.more} [${x.kvs.map(kv).join('; ')}])`;
    case 'response_delete_range':
      return `delete(deleted=${x.deleted} prev=[${x.prev_kvs.map(kv).join('; ')}])`;
    default:
      return String(which);
  }
}
function showTxn(t) {
  return `succeeded=${t.succeeded} rev=${t.header.revision} [${t.responses.map(showOp).join(', ')}]`;
}

// Collects a watcher's events; wait(pred) resolves when pred(events) holds
// (true) or after WAIT_MS (false, with a line saying so).
class Collector {
  constructor(watcher) {
    this.watcher = watcher;
    this.events = [];
    this.errors = [];
    this.empty = 0;
    this.waiters = [];
    watcher.on('data', res => {
      if (res.events.length === 0) this.empty++;
      for (const ev of res.events) this.events.push(ev);
      this.poke();
    });
    watcher.on('error', e => {
      this.errors.push(e);
      this.poke();
    });
  }
  poke() {
    for (const w of this.waiters.slice()) w();
  }
  wait(pred, what) {
    if (pred(this.events, this.errors)) return Promise.resolve(true);
    return new Promise(resolve => {
      const check = () => {
        if (pred(this.events, this.errors)) done(true);
      };
      const timer = setTimeout(() => {
        out(`timed out waiting for ${what} (${WAIT_MS} ms); got ${this.events.length} events`);
        done(false);
      }, WAIT_MS);
      const done = v => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter(w => w !== check);
        resolve(v);
      };
      this.waiters.push(check);
    });
  }
}
const hasValue = v => evs => evs.some(e => str(e.kv.value) === v);

// Resolves with the arguments of the first `event` on emitter, or rejects
// after WAIT_MS.
function once(emitter, event, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, on);
      reject(new Error(`timed out waiting for ${what}`));
    }, WAIT_MS);
    const on = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, on);
  });
}

// Resolves when the observer reports `want` as leader (now or later).
function leaderBecomes(observer, want, what) {
  if (observer.leader() === want) return Promise.resolve(true);
  return new Promise(resolve => {
    const timer = setTimeout(() => {
      observer.removeListener('change', on);
      out(`timed out waiting for ${what}; leader ${observer.leader()}`);
      resolve(false);
    }, WAIT_MS);
    const on = () => {
      if (observer.leader() === want) {
        clearTimeout(timer);
        observer.removeListener('change', on);
        resolve(true);
      }
    };
    observer.on('change', on);
  });
}

// ---------------------------------------------------------------- scenarios
async function kvScenario(c) {
  for (const [k, v] of [['a/1', 'one'], ['a/2', 'two'], ['a/3', 'three'], ['b/1', 'bee']]) {
    const r = await c.put(k).value(v).exec();
    out(`put ${k} -> rev=${r.header.revision} prev_kv=${r.prev_kv}`);
  }
  const g = await c.get('a/1').exec();
  out(`get a/1 -> count=${g.count} more=${g.more} rev=${g.header.revision} ${g.kvs.map(kv).join('; ')}`);
  out('get a/1 string ->', await c.get('a/1').string(), 'exists:', await c.get('a/1').exists());
  out('get missing ->', await c.get('missing').string(), 'exists:', await c.get('missing').exists());
  const p = await c.put('a/1').value('uno').getPrevious();
  out(`put a/1 uno getPrevious -> rev=${p.header.revision} prev=${kv(p)}`);
  out('get a/1 at revision 2 ->', await c.get('a/1').revision(2).string());
  const t = await c.put('a/3').touch();
  out(`touch a/3 (ignore_value) -> rev=${t.header.revision}`, kv((await c.get('a/3').exec()).kvs[0]));
  const all = await c.getAll().prefix('a/').exec();
  out(`getAll prefix a/ -> count=${all.count} more=${all.more}`);
  for (const x of all.kvs) out('  ', kv(x));
  out('getAll prefix a/ strings ->', JSON.stringify(await c.getAll().prefix('a/').strings()));
  out('getAll prefix a/ count ->', await c.getAll().prefix('a/').count());
  const lim = await c.getAll().prefix('a/').limit(2).exec();
  out(`getAll prefix a/ limit 2 -> count=${lim.count} more=${lim.more} keys=${lim.kvs.map(x => str(x.key))}`);
  out('getAll prefix a/ sort Key Descend ->', await c.getAll().prefix('a/').sort('Key', 'Descend').keys());
  out('getAll prefix a/ sort Mod Ascend ->', await c.getAll().prefix('a/').sort('Mod', 'Ascend').keys());
  out('getAll inRange a/2..b/2 ->', await c.getAll().inRange({ start: 'a/2', end: 'b/2' }).keys());
  out('getAll minModRevision 5 ->', await c.getAll().minModRevision(5).keys());
  out('getAll keys ->', await c.getAll().keys());
  const d = await c.delete().key('a/2').exec();
  out(`delete a/2 -> deleted=${d.deleted} rev=${d.header.revision}`);
  const d2 = await c.delete().key('a/1').getPrevious();
  out(`delete a/1 getPrevious -> [${d2.map(kv).join('; ')}]`);
  const d3 = await c.delete().key('a/2').exec();
  out(`delete a/2 again -> deleted=${d3.deleted} rev=${d3.header.revision}`);
  const d4 = await c.delete().prefix('b/').exec();
  out(`delete prefix b/ -> deleted=${d4.deleted} rev=${d4.header.revision}`);
  const left = await c.getAll().exec();
  out(`getAll -> rev=${left.header.revision} [${left.kvs.map(kv).join('; ')}]`);
  const d5 = await c.delete().all().exec();
  out(`delete all -> deleted=${d5.deleted} rev=${d5.header.revision}`, 'count now:', await c.getAll().count());
}

async function txnScenario(c) {
  await c.put('t/k').value('v1');
  const r = await c.put('t/k').value('v2').exec();
  const mod = r.header.revision;
  out('puts done, mod of t/k =', mod);
  let t = await c.if('t/k', 'Value', '==', 'v2')
    .and('t/k', 'Version', '==', 2)
    .and('t/k', 'Mod', '==', mod)
    .and('t/missing', 'Create', '==', 0)
    .then(c.put('t/k').value('v3'), c.get('t/k'))
    .else(c.put('t/fail').value('1'))
    .commit();
  out('if value==v2 && version==2 && mod==mod && missing create==0 ->', showTxn(t));
  t = await c.if('t/k', 'Mod', '<', mod)
    .then(c.put('t/never').value('x'))
    .else(c.getAll().prefix('t/'), c.delete().key('t/k'))
    .commit();
  out('if mod<old ->', showTxn(t));
  t = await c.if('t/k', 'Create', '==', 0)
    .and('t/zz', 'Value', '!=', 'q')
    .then(c.put('t/k').value('again'))
    .else(c.get('t/k'))
    .commit();
  out('if create==0 && zz value!=q ->', showTxn(t));
  t = await c.if('t/k', 'Version', '>', 5).then(c.put('t/hi').value('1')).else(c.put('t/lo').value('1')).commit();
  out('if version>5 ->', showTxn(t));
  out('getAll prefix t/ ->', JSON.stringify(await c.getAll().prefix('t/').strings()));

  // Software transactional memory: two concurrent increments of one counter;
  // a conflict makes one of them retry, the result is 2 either way.
  await c.put('t/counter').value('0');
  const inc = () => c.stm({ retries: 10 }).transact(async tx => {
    const v = Number(await tx.get('t/counter').string());
    await tx.put('t/counter').value(String(v + 1));
  });
  await Promise.all([inc(), inc()]);
  out('stm: two concurrent increments ->', await c.get('t/counter').string());
}

async function watchScenario(c) {
  // Writes before the watch, replayed from a start revision with prev kv.
  const r1 = await c.put('w/k').value('a').exec();
  await c.put('w/other').value('x');
  await c.put('w/k').value('b');
  await c.delete().key('w/k');
  const r5 = await c.put('w/k').value('c').exec();
  out(`writes at revs ${r1.header.revision}..${r5.header.revision}`);
  const replay = new Collector(await c.watch().key('w/k').startRevision(r1.header.revision).withPreviousKV().create());
  await replay.wait(hasValue('c'), 'replayed w/k=c');
  for (const ev of replay.events) out('key w/k start_revision prev_kv |', evText(ev));
  await replay.watcher.cancel();

  // A prefix watcher (prev kv), a put-only and a delete-only watcher, then a
  // sequence of puts and deletes; each must see its events in order.
  const pre = new Collector(await c.watch().prefix('wp/').withPreviousKV().create());
  const puts = new Collector(await c.watch().prefix('wp/').only('put').create());
  const dels = new Collector(await c.watch().prefix('wp/').only('delete').create());
  out('created watchers have ids:', [pre, puts, dels].every(x => x.watcher.id !== null));
  await c.put('wp/a').value('1');
  await c.put('wpx').value('outside');
  await c.put('wp/b').value('2');
  await c.put('wp/a').value('11');
  await c.delete().key('wp/a');
  await c.delete().prefix('wp/');
  await c.put('wp/end').value('end');
  await c.delete().key('wp/end');
  for (const [name, col, n] of [['prefix prev_kv', pre, 7], ['prefix only put', puts, 4], ['prefix only delete', dels, 3]]) {
    await col.wait(evs => evs.length >= n, `${n} events on ${name}`);
    for (const ev of col.events) out(name, '|', evText(ev));
    if (col.errors.length) out(name, 'errors:', col.errors.map(errText).join('; '));
  }
  out('~ progress/empty responses:', pre.empty + puts.empty + dels.empty);

  // After cancel no more events: a put seen by a still-open watcher on the
  // same stream was not delivered to the cancelled ones.
  await pre.watcher.cancel();
  await puts.watcher.cancel();
  const before = pre.events.length + puts.events.length;
  await c.put('wp/after').value('after cancel');
  await c.delete().key('wp/after');
  await dels.wait(evs => evs.some(e => str(e.kv.key) === 'wp/after'), 'delete of wp/after');
  out('events after cancel on cancelled watchers:', pre.events.length + puts.events.length - before);
  await dels.watcher.cancel();
}

async function leaseScenario(c) {
  const lease = c.lease(10, { autoKeepAlive: false });
  const id = await lease.grant();
  out('grant ttl 10 -> id', leaseName(id), 'nonzero:', id !== '0');
  await lease.put('l/a').value('1');
  await c.put('l/b').value('2').lease(id);
  await c.put('l/c').value('3');
  for (const x of (await c.getAll().prefix('l/').exec()).kvs) out('get', kv(x));
  let ttl = await c.leaseClient.leaseTimeToLive({ ID: id, keys: true });
  out(`timeToLive -> ID=${leaseName(ttl.ID)} grantedTTL=${ttl.grantedTTL} ` +
    `ttl in (0,10]: ${Number(ttl.TTL) > 0 && Number(ttl.TTL) <= 10} keys=${ttl.keys.map(str).sort()}`);
  out('~ timeToLive TTL', ttl.TTL);
  const ka = await lease.keepaliveOnce();
  out(`keepaliveOnce -> ID=${leaseName(ka.ID)} TTL=${ka.TTL}`);
  const ls = await c.leaseClient.leaseLeases({});
  out('leases contains it:', ls.leases.some(l => l.ID === id), 'count:', ls.leases.length);
  const col = new Collector(await c.watch().prefix('l/').withPreviousKV().create());
  await lease.revoke();
  out('revoked:', lease.revoked());
  await c.put('l/z').value('end');
  await col.wait(hasValue('end'), 'l/z=end after revoke');
  for (const ev of col.events) out('watch l/ |', evText(ev));
  await col.watcher.cancel();
  out('keys after revoke ->', await c.getAll().prefix('l/').keys());
  ttl = await c.leaseClient.leaseTimeToLive({ ID: id, keys: true });
  out(`timeToLive after revoke -> ID=${leaseName(ttl.ID)} TTL=${ttl.TTL} grantedTTL=${ttl.grantedTTL} keys=${ttl.keys.length}`);
  const again = c.lease(10, { autoKeepAlive: false });
  const id2 = await again.grant();
  leaseName(id2);
  await again.revoke();
  await attempt('keepaliveOnce revoked lease', () => again.keepaliveOnce(), r => `TTL=${r.TTL}`);
  await attempt('revoke revoked lease (client ignores not found)', () => again.revoke(), () => 'done');
  await attempt('leaseRevoke raw revoked id', () => c.leaseClient.leaseRevoke({ ID: id2 }), () => 'done');
  await attempt('put with revoked lease', () => c.put('l/d').value('4').lease(id2).exec(), r => `rev=${r.header.revision}`);
  await attempt('grant explicit ID 4242', () => c.leaseClient.leaseGrant({ TTL: 30, ID: 4242 }),
    r => `ID=${r.ID} TTL=${r.TTL} error=${JSON.stringify(r.error)}`);
  await attempt('grant explicit ID 4242 again', () => c.leaseClient.leaseGrant({ TTL: 30, ID: 4242 }),
    r => `ID=${r.ID} TTL=${r.TTL}`);
  await attempt('timeToLive unknown 999', () => c.leaseClient.leaseTimeToLive({ ID: 999 }),
    r => `ID=${r.ID} TTL=${r.TTL} grantedTTL=${r.grantedTTL}`);
  await attempt('revoke 4242', () => c.leaseClient.leaseRevoke({ ID: 4242 }), () => 'done');
  await attempt('lease ttl 0 (client-side check)', () => c.lease(0), () => 'granted');
}

async function lockScenario(c) {
  const key = 'lk/res';
  const a = c.lock(key).ttl(10);
  await a.acquire();
  const aLease = await a.leaseId();
  out('A acquire -> ok, lease', leaseName(aLease));
  const held = (await c.get(key).exec()).kvs[0];
  out('lock key while A holds ->', kv(held));
  const b = c.lock(key).ttl(10);
  await attempt('B acquire while A holds', () => b.acquire(), () => 'acquired');
  // B waits for the lock key to be deleted (A's release revokes its lease).
  const gone = new Collector(await c.watch().key(key).startRevision(String(Number(held.mod_revision) + 1)).only('delete').create());
  await a.release();
  out('A release -> done');
  await gone.wait(evs => evs.length >= 1, 'lock key deletion');
  out('B saw lock key deleted:', gone.events.length === 1);
  await gone.watcher.cancel();
  const b2 = c.lock(key).ttl(10);
  await b2.acquire();
  out('B acquire after A released -> ok, lease', leaseName(await b2.leaseId()));
  await attempt('A acquire while B holds', () => c.lock(key).ttl(10).acquire(), () => 'acquired');
  await b2.release();
  out('B release -> key exists:', await c.get(key).exists());

  // do(): the lock is held inside the callback and released afterwards.
  const v = await c.lock('lk/do').ttl(10).do(async () => {
    out('do: inside, key exists:', await c.get('lk/do').exists());
    await attempt('do: second acquire inside', () => c.lock('lk/do').ttl(10).acquire(), () => 'acquired');
    return 'result';
  });
  out('do returned', v, 'key exists after:', await c.get('lk/do').exists());

  // Two workers contend for one lock, 3 critical sections each; a worker that
  // fails to acquire waits for the lock key's deletion (watch), then retries.
  let inside = 0;
  let maxInside = 0;
  const turns = [];
  const worker = async name => {
    for (let i = 0; i < 3; i++) {
      for (;;) {
        const l = c.lock('lk/turns').ttl(10);
        try {
          await l.acquire();
        } catch (e) {
          if (!(e instanceof etcd3.EtcdLockFailedError)) throw e;
          const r = await c.get('lk/turns').exec();
          if (r.kvs.length === 0) continue;
          const w = new Collector(await c.watch().key('lk/turns').startRevision(String(Number(r.header.revision) + 1)).only('delete').create());
          await w.wait(evs => evs.length >= 1, `${name} waiting for lk/turns`);
          await w.watcher.cancel();
          continue;
        }
        inside++;
        maxInside = Math.max(maxInside, inside);
        turns.push(name);
        await c.put('lk/log').value(`${name}${i}`);
        inside--;
        await l.release();
        break;
      }
    }
  };
  await Promise.all([worker('A'), worker('B')]);
  out(`contention: sections=${turns.length} A=${turns.filter(x => x === 'A').length} ` +
    `B=${turns.filter(x => x === 'B').length} max holders at once=${maxInside}`);
  out('~ order', turns.join(''));
  out('lock keys left ->', await c.getAll().prefix('lk/').keys());
}

async function electionScenario(c) {
  const el = c.election('el', 10);
  const obs = await el.observe();
  out('observe -> leader', obs.leader(), 'hasLeader', obs.hasLeader);
  const alice = el.campaign('alice');
  alice.on('error', e => out('alice error', errText(e)));
  await alice.wait();
  out('alice elected');
  out('observer sees alice:', await leaderBecomes(obs, 'alice', 'alice as leader'));
  out('leader() ->', await el.leader());
  const key = await alice.getCampaignKey();
  out('campaign key is election/el/<lease>:', /^election\/el\/\d+$/.test(key));
  let bobElected = false;
  const bob = el.campaign('bob');
  bob.on('elected', () => { bobElected = true; });
  bob.on('error', e => out('bob error', errText(e)));
  const bobWins = once(bob, 'elected', 'bob elected');
  bobWins.catch(() => undefined);
  await once(bob, '_isWaiting', 'bob waiting');
  out('bob waiting behind alice, elected:', bobElected);
  await alice.proclaim('alice2');
  out('observer sees proclaim alice2:', await leaderBecomes(obs, 'alice2', 'alice2 as leader'));
  out('leader() ->', await el.leader());
  await alice.resign();
  out('alice resigned');
  await bobWins;
  out('bob elected');
  out('observer sees bob:', await leaderBecomes(obs, 'bob', 'bob as leader'));
  out('leader() ->', await el.leader());
  await attempt('alice proclaim after resign', () => alice.proclaim('zombie'), () => 'done');
  await bob.resign();
  out('observer sees no leader:', await leaderBecomes(obs, undefined, 'no leader'));
  out('leader() ->', await el.leader());
  await obs.cancel();
  out('election keys left ->', await c.getAll().prefix('election/').count());
}

async function membersScenario(c) {
  const r = await c.cluster.memberList({});
  out('member count:', r.members.length);
  for (const m of r.members) {
    out(`member name=${m.name} peerURLs=${JSON.stringify(m.peerURLs)} clientURLs=${JSON.stringify(m.clientURLs)} ` +
      `id nonzero=${m.ID !== '0'} isLearner=${m.isLearner}`);
  }
  out('header member_id is a member:', r.members.some(m => m.ID === r.header.member_id));
  const s = await c.maintenance.status({});
  out('~ status version', s.version, 'dbSize', s.dbSize, 'raftIndex', s.raftIndex, 'raftTerm', s.raftTerm);
  out('status version 3.x:', /^3\./.test(s.version), 'leader is a member:', r.members.some(m => m.ID === s.leader));
}

async function errorsScenario(c) {
  const r1 = await c.put('e/k').value('old').exec();
  await c.put('e/k').value('new');
  const r3 = await c.put('e/k').value('newer').exec();
  const rev1 = r1.header.revision;
  const rev3 = r3.header.revision;
  const future = String(Number(rev3) + 100);
  await attempt('get at future revision', () => c.get('e/k').revision(future).string());
  await attempt('compact at rev of 3rd put', () => c.kv.compact({ revision: rev3, physical: true }),
    r => `rev=${r.header.revision}`);
  await attempt('get at compacted revision', () => c.get('e/k').revision(rev1).string());
  await attempt('get at compact revision', () => c.get('e/k').revision(rev3).string());
  await attempt('compact again at older rev', () => c.kv.compact({ revision: rev1 }), () => 'done');
  await attempt('compact at future rev', () => c.kv.compact({ revision: future }), () => 'done');
  await attempt('get empty key', () => c.get('').string());
  await attempt('put empty key', () => c.put('').value('x').exec(), r => `rev=${r.header.revision}`);
  await attempt('put ignore_lease on missing key', () => c.put('e/missing').value('x').ignoreLease().exec(),
    r => `rev=${r.header.revision}`);
  await attempt('touch missing key', () => c.put('e/missing').touch(), r => `rev=${r.header.revision}`);
  await attempt('txn with duplicate put keys',
    () => c.if('e/k', 'Version', '>', 0).then(c.put('e/d').value('a'), c.put('e/d').value('b')).commit(), showTxn);
  // Over etcd's 1.5 MiB request limit but under gRPC's 2 MiB message limit
  // (a RESOURCE_EXHAUSTED answer would be retried and trip etcd3's breaker).
  await attempt('put 1.6 MiB value', () => c.put('e/big').value(Buffer.alloc(1677722, 120)).exec(),
    r => `rev=${r.header.revision}`);

  // A watch from a compacted revision is created, then cancelled by the
  // server; etcd3 turns the cancel into an 'error' event on the watcher.
  const w = c.watch().key('e/k').startRevision(rev1).watcher();
  const col = new Collector(w);
  let connected = false;
  w.on('connected', () => { connected = true; });
  await col.wait((evs, errs) => errs.length >= 1 || evs.length >= 1, 'watch from compacted revision');
  out(`watch from compacted revision -> connected=${connected} events=${col.events.length} ` +
    `errors=[${col.errors.map(errText).join('; ')}]`);
  if (col.errors.length === 0) await w.cancel();
  const w2 = new Collector(await c.watch().key('e/k').startRevision(rev3).create());
  await w2.wait(evs => evs.length >= 1, 'watch from compact revision');
  out(`watch from compact revision -> [${w2.events.map(evText).join('; ')}] errors=${w2.errors.length}`);
  await w2.watcher.cancel();

  // The same on a raw Watch stream (etcd3 drops compact_revision): every
  // response until the cancel.
  const stream = await c.watchClient.watch();
  const resps = [];
  const canceled = new Promise(resolve => {
    const timer = setTimeout(() => {
      out(`timed out waiting for the raw cancel (${WAIT_MS} ms)`);
      resolve();
    }, WAIT_MS);
    stream.on('data', r => {
      resps.push(r);
      if (r.canceled) {
        clearTimeout(timer);
        resolve();
      }
    });
    stream.on('error', e => resps.push(e));
  });
  stream.write({ create_request: { key: Buffer.from('e/k'), start_revision: rev1 } });
  await canceled;
  const shown = resps.slice(); // not the CANCELLED status of our own cancel()
  // etcd keeps a watch stream open after the client half-closes it, so it is
  // also cancelled; after end() the stream is no longer writable, which keeps
  // etcd3's error hook from counting the CANCELLED status as a host failure.
  const closed = new Promise(resolve => {
    stream.on('status', resolve);
    stream.on('close', resolve);
    setTimeout(resolve, WAIT_MS).unref();
  });
  stream.end();
  stream.cancel();
  await closed;
  for (const r of shown) {
    if (r instanceof Error) out('raw watch from compacted revision | error', errText(r));
    else {
      out(`raw watch from compacted revision | created=${r.created} canceled=${r.canceled} ` +
        `compact_revision=${r.compact_revision} cancel_reason=${JSON.stringify(r.cancel_reason)} ` +
        `header.revision=${r.header && r.header.revision} events=${r.events.length}`);
    }
  }
}

// ---------------------------------------------------------------- main
const SCENARIOS = [
  ['kv', kvScenario],
  ['txn', txnScenario],
  ['watch needs=watch', watchScenario],
  ['lease needs=lease', leaseScenario],
  ['lock needs=lease', lockScenario],
  ['election needs=lease', electionScenario],
  ['members', membersScenario],
  ['errors', errorsScenario],
];

async function main() {
  const c = new Etcd3({
    hosts: `http://${host}:${port}`,
    // Unary calls get a 10 s deadline; streams (watch, keep-alive) none.
    defaultCallOptions: ctx => (ctx.isStream ? {} : { deadline: Date.now() + 10000 }),
  });
  // SCENARIOS=kv,lock (names without needs=) runs only those, for debugging.
  const only = process.env.SCENARIOS ? process.env.SCENARIOS.split(',') : null;
  for (const [name, fn] of SCENARIOS) {
    if (only && !only.includes(name.split(' ')[0])) continue;
    out('## scenario ' + name);
    try {
      await fn(c);
    } catch (e) {
      out('ERROR', errText(e));
    }
  }
  c.close();
  // Anything still pending (a timed-out wait's watcher, a keep-alive timer)
  // must not keep the process alive for long.
  setTimeout(() => {
    const open = process.getActiveResourcesInfo().filter(n => n !== 'TTYWrap' && n !== 'PipeWrap');
    out('~ forced exit: still open 5 s after close:', open.join(',') || '(none)');
    process.exit(0);
  }, 5000).unref();
}

process.on('unhandledRejection', e => out('ERROR unhandledRejection', errText(e)));
main().catch(e => {
  out('ERROR', errText(e));
  process.exit(1);
});
