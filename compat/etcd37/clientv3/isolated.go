package main

// The require-leader scenario: a 3-member cluster of the server under test, one member cut
// off from the other two (they are stopped with SIGSTOP, so they neither answer nor time
// out), and what clients of the isolated member see with and without WithRequireLeader.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	memberReadyTimeout = 30 * time.Second
	// How long the isolated member may take to notice it has no leader. etcd cancels
	// require-leader watches after it has gone without a leader for a few election timeouts.
	noLeaderTimeout = 30 * time.Second
)

type member struct {
	name, clientURL, peerURL string
	cmd                      *exec.Cmd
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startCluster starts three members of server in dir with etcd's flags and waits until
// each has logged that it is ready to serve clients.
func startCluster(server, dir string) ([]*member, error) {
	var ms []*member
	var initial []string
	for i := 0; i < 3; i++ {
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		m := &member{name: fmt.Sprintf("m%d", i), clientURL: fmt.Sprintf("http://127.0.0.1:%d", cp),
			peerURL: fmt.Sprintf("http://127.0.0.1:%d", pp)}
		ms = append(ms, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	ready := make(chan error, len(ms))
	for _, m := range ms {
		m.cmd = exec.Command(server, "--name", m.name, "--data-dir", filepath.Join(dir, m.name),
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new")
		logf, err := os.Create(filepath.Join(dir, m.name+".log"))
		if err != nil {
			return ms, err
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return ms, err
		}
		m.cmd.Stdout, m.cmd.Stderr = pw, pw
		if err := m.cmd.Start(); err != nil {
			return ms, err
		}
		pw.Close()
		go func() {
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64*1024), 1024*1024)
			said := false
			for sc.Scan() {
				fmt.Fprintln(logf, sc.Text())
				if !said && strings.Contains(sc.Text(), "ready to serve client requests") {
					said = true
					ready <- nil
				}
			}
			if !said {
				ready <- fmt.Errorf("a member exited before it was ready (log in %s)", dir)
			}
		}()
	}
	deadline := time.After(memberReadyTimeout)
	for range ms {
		select {
		case err := <-ready:
			if err != nil {
				return ms, err
			}
		case <-deadline:
			return ms, fmt.Errorf("members not ready within %s", memberReadyTimeout)
		}
	}
	return ms, nil
}

func stopCluster(ms []*member) {
	for _, m := range ms {
		if m.cmd != nil && m.cmd.Process != nil {
			m.cmd.Process.Signal(syscall.SIGCONT)
			m.cmd.Process.Kill()
			m.cmd.Wait()
		}
	}
}

func clientOf(m *member) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{m.clientURL}, DialTimeout: 5 * time.Second,
		Logger: zapNop()})
}

// requireLeader runs the scenario twice: once isolating a follower, once the leader.
func requireLeader(server string) error {
	for _, which := range []string{"follower", "leader"} {
		if err := requireLeaderOnce(server, which); err != nil {
			return fmt.Errorf("isolating the %s: %w", which, err)
		}
	}
	return nil
}

func requireLeaderOnce(server, which string) error {
	dir, err := os.MkdirTemp("", "clientv3-require-leader-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ms, err := startCluster(server, dir)
	defer stopCluster(ms)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*scenarioTimeout)
	defer cancel()
	// Find who leads, from the first member's status.
	c0, err := clientOf(ms[0])
	if err != nil {
		return err
	}
	defer c0.Close()
	if _, err := c0.Put(ctx, "/rl/k", "v"); err != nil {
		return err
	}
	var leaderID uint64
	ids := map[uint64]*member{}
	for _, m := range ms {
		st, err := c0.Status(ctx, strings.TrimPrefix(m.clientURL, "http://"))
		if err != nil {
			return err
		}
		ids[st.Header.MemberId] = m
		leaderID = st.Leader
	}
	isolated := ids[leaderID]
	if which == "follower" {
		for id, m := range ids {
			if id != leaderID {
				isolated = m
				break
			}
		}
	}
	cli, err := clientOf(isolated)
	if err != nil {
		return err
	}
	defer cli.Close()
	// A require-leader watch and a plain one, both open before the isolation.
	rlWatch := cli.Watch(clientv3.WithRequireLeader(ctx), "/rl/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	plainWatch := cli.Watch(ctx, "/rl/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-rlWatch
	<-plainWatch
	for _, m := range ms {
		if m != isolated {
			if err := m.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				return err
			}
		}
	}
	fmt.Printf("isolated the %s\n", which)
	// The require-leader watch ends once the member knows it has no leader.
	wait := time.After(noLeaderTimeout)
	ended := false
	for !ended {
		select {
		case wr, ok := <-rlWatch:
			if !ok {
				fmt.Printf("require-leader watch -> closed\n")
				ended = true
			} else if wr.Err() != nil || wr.Canceled {
				fmt.Printf("require-leader watch -> canceled=%t err=%q\n", wr.Canceled, fmt.Sprint(wr.Err()))
				ended = true
			}
		case <-wait:
			fmt.Printf("require-leader watch -> still open after %s\n", noLeaderTimeout)
			ended = true
		}
	}
	select {
	case wr, ok := <-plainWatch:
		fmt.Printf("plain watch -> ended: open=%t err=%v\n", ok, wr.Err())
	default:
		fmt.Printf("plain watch -> still open\n")
	}
	rctx, rcancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 5*time.Second)
	_, err = cli.Get(rctx, "/rl/k")
	rcancel()
	errLine("linearizable get with require-leader", err)
	rctx, rcancel = context.WithTimeout(clientv3.WithRequireLeader(ctx), 5*time.Second)
	_, err = cli.Put(rctx, "/rl/k", "w")
	rcancel()
	errLine("put with require-leader", err)
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	g, err := cli.Get(sctx, "/rl/k", clientv3.WithSerializable())
	scancel()
	if err != nil {
		errLine("serializable get without require-leader", err)
	} else {
		fmt.Printf("serializable get without require-leader -> %s\n", kvLine(g.Kvs[0]))
	}
	// Heal: the others resume, a leader is elected, and require-leader requests work again.
	for _, m := range ms {
		if m != isolated {
			if err := m.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				return err
			}
		}
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		rctx, rcancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 2*time.Second)
		_, lastErr = cli.Put(rctx, "/rl/k", "healed")
		rcancel()
		if lastErr == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling for an election: no event to await here
	}
	errLine("put with require-leader after healing", lastErr)
	return nil
}
