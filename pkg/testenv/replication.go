package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/jackc/pgx/v5"
)

// This file holds replicated servers for failover fault tests: a Redis
// master and replica watched by three sentinels, and a Postgres primary with
// a synchronous streaming standby. Like the single servers of servers.go they
// are private, on free loopback ports, in temporary directories, and gone
// when the test ends.

// RedisSentinel is a Redis master with one replica, watched by three
// sentinels (quorum 2) that fail over about a second after the master dies.
type RedisSentinel struct {
	// MasterName is the name the sentinels monitor the master under.
	MasterName string

	t         testing.TB
	dir       string
	mu        sync.Mutex
	nodes     map[string]*redisProc // master and replica, by address
	sentinels []*redisProc
	lost      string // address KillMaster killed or PauseMaster froze last
}

// redisProc is one redis-server process (a data node or a sentinel), which
// may be killed and started again with the same command line.
type redisProc struct {
	port   int
	args   []string
	log    string
	cmd    *exec.Cmd
	done   chan struct{}
	stderr *Buffer
}

func (p *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// Sentinel timing. down-after-milliseconds is how long a master may be
// silent before a sentinel calls it down: 2 s, not less, since a sentinel
// counts that silence from the moment it switched to a new master, and on a
// loaded test machine its first ping of the new master can take over a
// second, which made it fail the new master over again. failover-timeout has no minimum
// but must be positive; besides bounding each step of a failover it makes a
// sentinel wait 2×failover-timeout before it retries a failover that failed
// (a split vote), so 10 s would make a rare retry cost 20 s. A promotion on
// loopback takes well under a second, so 3 s leaves ample room.
const (
	sentinelDownAfter       = 2000
	sentinelFailoverTimeout = 3000
)

// StartRedisSentinel starts a master and a replica of it (neither keeps
// anything on disk) and three sentinels monitoring the master, and waits
// until the replica is in sync and every sentinel knows the replica and the
// two other sentinels, without which no failover could happen.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	RequireServer(t, "redis-server not installed", err)
	begin := time.Now()
	dir, err := os.MkdirTemp("", "sw-sentinel-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &RedisSentinel{MasterName: "swmaster", t: t, dir: dir, nodes: map[string]*redisProc{}}
	t.Cleanup(s.stopAll)
	t.Cleanup(func() { dumpLogsIfFailed(t, dir) }) // runs first: before the kill and removal

	master := s.node(FreePort(t), "")
	replica := s.node(FreePort(t), master.addr())
	s.start(master)
	s.start(replica)
	// Sentinels learn of replicas from the master's INFO, which they ask
	// for every 10 s, once at once: start them after the replica is in sync
	// so that the first INFO shows it.
	Eventually(t, 20*time.Second, "the Redis replica to be in sync", func() bool {
		m, err := redisInfo(master.addr(), "replication")
		if err != nil || m["connected_slaves"] != "1" || !strings.Contains(m["slave0"], "state=online") {
			return false
		}
		r, err := redisInfo(replica.addr(), "replication")
		return err == nil && r["master_link_status"] == "up"
	})

	for range 3 {
		port := FreePort(t)
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
		// resolve-hostnames is off by default (Redis ≥ 6.2); it is set so
		// that the addresses stay IPs whatever the default becomes. The
		// sentinel rewrites this file (its id, the replicas and sentinels it
		// finds, each failover), hence one file each.
		text := strings.Join([]string{
			fmt.Sprintf("port %d", port),
			"bind 127.0.0.1",
			"daemonize no",
			"dir " + dir,
			"logfile " + filepath.Join(dir, fmt.Sprintf("sentinel-%d.log", port)),
			"sentinel resolve-hostnames no",
			"sentinel announce-hostnames no",
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", s.MasterName, master.port),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", s.MasterName, sentinelDownAfter),
			fmt.Sprintf("sentinel failover-timeout %s %d", s.MasterName, sentinelFailoverTimeout),
			fmt.Sprintf("sentinel parallel-syncs %s 1", s.MasterName),
			"",
		}, "\n")
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		p := &redisProc{port: port, args: []string{conf, "--sentinel"}, log: filepath.Join(dir, fmt.Sprintf("sentinel-%d.log", port))}
		s.mu.Lock()
		s.sentinels = append(s.sentinels, p)
		s.mu.Unlock()
		s.start(p)
	}
	// Sentinels find each other through hello messages they publish on the
	// master and replica every 2 s.
	Eventually(t, 20*time.Second, "every sentinel to know the replica and the other sentinels", func() bool {
		for _, a := range s.SentinelAddrs() {
			if !s.sentinelReady(a) {
				return false
			}
		}
		return true
	})
	t.Logf("testenv: Redis master %s, replica %s and 3 sentinels ready in %s",
		master.addr(), replica.addr(), time.Since(begin).Round(time.Millisecond))
	return s
}

// node registers a data node on port, a replica of replicaOf if not empty.
func (s *RedisSentinel) node(port int, replicaOf string) *redisProc {
	ndir := filepath.Join(s.dir, fmt.Sprintf("node-%d", port))
	if err := os.Mkdir(ndir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	p := &redisProc{port: port, log: filepath.Join(s.dir, fmt.Sprintf("node-%d.log", port))}
	// repl-diskless-sync-delay 0: a master would otherwise wait 5 s for
	// more replicas before it starts a full sync (Redis ≥ 7 syncs disklessly
	// by default), at the start and again for a restarted node.
	p.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--repl-diskless-sync-delay", "0", "--dir", ndir, "--logfile", p.log}
	if replicaOf != "" {
		h, pt := RedisHostPort(s.t, replicaOf)
		p.args = append(p.args, "--replicaof", h, strconv.Itoa(pt))
	}
	s.mu.Lock()
	s.nodes[p.addr()] = p
	s.mu.Unlock()
	return p
}

// start runs p's command line and waits until it answers PING.
func (s *RedisSentinel) start(p *redisProc) {
	s.t.Helper()
	s.mu.Lock()
	cmd := exec.Command("redis-server", p.args...)
	p.stderr = &Buffer{}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		s.t.Fatalf("testenv: redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	s.mu.Unlock()
	Eventually(s.t, 15*time.Second, "redis-server "+p.addr()+" to answer", func() bool {
		select {
		case <-done:
			log, _ := os.ReadFile(p.log)
			s.t.Fatalf("testenv: redis-server %v exited: %v\n%s\n%s", p.args, cmd.ProcessState, p.stderr.String(), log)
		default:
		}
		_, err := redisDo(p.addr(), "PING")
		return err == nil
	})
}

// kill SIGKILLs p if it runs and waits until it has exited.
func (s *RedisSentinel) kill(p *redisProc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

func (s *RedisSentinel) stopAll() {
	s.mu.Lock()
	all := append([]*redisProc{}, s.sentinels...)
	for _, n := range s.nodes {
		all = append(all, n)
	}
	s.mu.Unlock()
	for _, p := range all {
		s.kill(p)
	}
}

// sentinelReady tells whether the sentinel at addr sees the replica as a
// connected replica with its link to the master up, and both other
// sentinels.
func (s *RedisSentinel) sentinelReady(addr string) bool {
	reps, err := redis.Values(redisDo(addr, "SENTINEL", "REPLICAS", s.MasterName))
	if err != nil || len(reps) != 1 {
		return false
	}
	r, err := redis.StringMap(reps[0], nil)
	if err != nil || r["flags"] != "slave" || r["master-link-status"] != "ok" {
		return false
	}
	sens, err := redis.Values(redisDo(addr, "SENTINEL", "SENTINELS", s.MasterName))
	if err != nil || len(sens) != 2 {
		return false
	}
	for _, e := range sens {
		m, err := redis.StringMap(e, nil)
		if err != nil || m["flags"] != "sentinel" {
			return false
		}
	}
	return true
}

// SentinelAddrs are the three sentinels' host:port addresses.
func (s *RedisSentinel) SentinelAddrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.sentinels))
	for i, p := range s.sentinels {
		out[i] = p.addr()
	}
	return out
}

// Master is the current master's host:port, as the first sentinel that
// answers gives it (SENTINEL get-master-addr-by-name).
func (s *RedisSentinel) Master() string {
	s.t.Helper()
	var errs []error
	for _, a := range s.SentinelAddrs() {
		m, err := sentinelMaster(a, s.MasterName)
		if err == nil {
			return m
		}
		errs = append(errs, err)
	}
	s.t.Fatalf("testenv: no sentinel knows the master: %v", errors.Join(errs...))
	return ""
}

// KillMaster SIGKILLs the current master, as a crashed machine stops, and
// returns its address.
func (s *RedisSentinel) KillMaster() string {
	s.t.Helper()
	addr := s.Master()
	s.mu.Lock()
	p := s.nodes[addr]
	s.mu.Unlock()
	if p == nil {
		s.t.Fatalf("testenv: the sentinels' master %s is none of ours", addr)
	}
	s.kill(p)
	s.mu.Lock()
	s.lost = addr
	s.mu.Unlock()
	return addr
}

// PauseMaster freezes the current master (SIGSTOP), as a hung host or a
// network that drops packets does: the kernel still accepts connections and
// keeps those open, but nothing answers. The sentinels fail over from it as
// from a dead one (WaitForFailover waits for that). It returns the master's
// address; ResumeNode lets it run again, and the test's cleanup resumes it.
func (s *RedisSentinel) PauseMaster() string {
	s.t.Helper()
	addr := s.Master()
	s.mu.Lock()
	p := s.nodes[addr]
	s.mu.Unlock()
	if p == nil {
		s.t.Fatalf("testenv: the sentinels' master %s is none of ours", addr)
	}
	s.pause(p)
	s.mu.Lock()
	s.lost = addr
	s.mu.Unlock()
	return addr
}

// ResumeNode lets the data node at addr, frozen by PauseMaster, run again
// (SIGCONT).
func (s *RedisSentinel) ResumeNode(addr string) {
	s.t.Helper()
	s.mu.Lock()
	p := s.nodes[addr]
	s.mu.Unlock()
	if p == nil {
		s.t.Fatalf("testenv: %s is not a node of ours", addr)
	}
	s.signal(p, syscall.SIGCONT)
}

// PauseSentinels freezes every sentinel (SIGSTOP): questions to them are
// accepted by the kernel and never answered. ResumeSentinels undoes it, and
// the test's cleanup resumes them. Master asks the sentinels, so it fails
// meanwhile.
func (s *RedisSentinel) PauseSentinels() {
	s.t.Helper()
	s.mu.Lock()
	all := append([]*redisProc{}, s.sentinels...)
	s.mu.Unlock()
	for _, p := range all {
		s.pause(p)
	}
}

// ResumeSentinels lets every sentinel run again (SIGCONT).
func (s *RedisSentinel) ResumeSentinels() {
	s.mu.Lock()
	all := append([]*redisProc{}, s.sentinels...)
	s.mu.Unlock()
	for _, p := range all {
		s.signal(p, syscall.SIGCONT)
	}
}

// pause sends p SIGSTOP and has the test's cleanup send it SIGCONT, before
// the servers are stopped, so that no process is left stopped.
func (s *RedisSentinel) pause(p *redisProc) {
	s.t.Cleanup(func() { s.signal(p, syscall.SIGCONT) })
	s.signal(p, syscall.SIGSTOP)
}

// signal sends sig to p if it runs.
func (s *RedisSentinel) signal(p *redisProc, sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// WaitForFailover waits until every sentinel names a master other than the
// one KillMaster killed or PauseMaster froze and that server answers ROLE
// as a master, and returns its address.
func (s *RedisSentinel) WaitForFailover(timeout time.Duration) string {
	s.t.Helper()
	s.mu.Lock()
	old := s.lost
	s.mu.Unlock()
	if old == "" {
		s.t.Fatal("testenv: WaitForFailover before KillMaster or PauseMaster")
	}
	var addr string
	Eventually(s.t, timeout, "the sentinels to fail over from "+old, func() bool {
		agreed := ""
		for _, a := range s.SentinelAddrs() {
			m, err := sentinelMaster(a, s.MasterName)
			if err != nil || m == old || (agreed != "" && m != agreed) {
				return false
			}
			agreed = m
		}
		if role, err := redisRole(agreed); err != nil || role != "master" {
			return false
		}
		addr = agreed
		return true
	})
	return addr
}

// StartNodeAgain restarts the killed data node at addr with its original
// command line (so empty, and a master if it was started as one), as a
// crashed machine comes back, and waits until it answers PING. The sentinels
// then turn it into a replica of the current master, but only after it has
// reported its wrong role for 8 s (4 hello periods) and at their next INFO:
// about 10 s. WaitForReplica waits for that.
func (s *RedisSentinel) StartNodeAgain(addr string) {
	s.t.Helper()
	s.mu.Lock()
	p := s.nodes[addr]
	running := p != nil && p.cmd != nil
	s.mu.Unlock()
	if p == nil || running {
		s.t.Fatalf("testenv: %s is not a stopped node of ours", addr)
	}
	s.start(p)
}

// WaitForReplica waits until the node at addr replicates from the current
// master (as the sentinels name it) with its link up.
func (s *RedisSentinel) WaitForReplica(addr string, timeout time.Duration) {
	s.t.Helper()
	Eventually(s.t, timeout, addr+" to replicate from the current master", func() bool {
		var master string
		for _, a := range s.SentinelAddrs() {
			if m, err := sentinelMaster(a, s.MasterName); err == nil {
				master = m
				break
			}
		}
		r, err := redisInfo(addr, "replication")
		if err != nil || master == "" || r["role"] != "slave" || r["master_link_status"] != "up" {
			return false
		}
		return r["master_host"]+":"+r["master_port"] == master
	})
}

func sentinelMaster(sentinel, name string) (string, error) {
	v, err := redis.Strings(redisDo(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name))
	if err != nil {
		return "", err
	}
	if len(v) != 2 {
		return "", fmt.Errorf("sentinel %s: no master %q", sentinel, name)
	}
	return v[0] + ":" + v[1], nil
}

// redisDo runs one command on a fresh connection to addr.
func redisDo(addr, cmd string, args ...any) (any, error) {
	c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(500*time.Millisecond),
		redis.DialReadTimeout(2*time.Second), redis.DialWriteTimeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(cmd, args...)
}

// redisInfo is a section of INFO as key → value.
func redisInfo(addr, section string) (map[string]string, error) {
	text, err := redis.String(redisDo(addr, "INFO", section))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m, nil
}

// redisRole is the first element of ROLE: master, slave or sentinel.
func redisRole(addr string) (string, error) {
	v, err := redis.Values(redisDo(addr, "ROLE"))
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", fmt.Errorf("%s: empty ROLE reply", addr)
	}
	return redis.String(v[0], nil)
}

// PostgresPair is a Postgres primary with a streaming standby that it
// replicates to synchronously: a commit the primary acknowledged is on the
// standby's disk, so it survives a promotion.
type PostgresPair struct {
	PrimaryPort, StandbyPort int

	t   testing.TB
	dir string
	mu  sync.Mutex
}

// StartPostgresPair initialises a primary (as StartPostgres does), clones a
// standby from it with pg_basebackup, starts both and waits until the
// primary streams to the standby as its synchronous standby.
func StartPostgresPair(t testing.TB) *PostgresPair {
	t.Helper()
	bin, err := postgresBin()
	RequireServer(t, "no Postgres server binaries", err)
	begin := time.Now()
	dir, err := os.MkdirTemp("", "sw-pgpair-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	p := &PostgresPair{t: t, dir: dir, PrimaryPort: FreePort(t), StandbyPort: FreePort(t)}
	t.Cleanup(p.stopAll)
	t.Cleanup(func() { dumpLogsIfFailed(t, dir) })

	if out, err := pgCommand(filepath.Join(bin, "initdb"), "-D", p.data("primary"), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	// initdb -A trust already trusts replication connections from
	// 127.0.0.1; say so explicitly all the same.
	hba, err := os.OpenFile(filepath.Join(p.data("primary"), "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = hba.WriteString("host replication all 127.0.0.1/32 trust\n")
	if cerr := hba.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	// synchronous_standby_names is given on the primary's command line only,
	// not in postgresql.conf or postgresql.auto.conf, which pg_basebackup
	// copies: the standby has none, so once promoted with no standby of its
	// own its commits do not wait for one (Promote checks it).
	p.pgctl("primary", "start", "-o", p.options(p.PrimaryPort)+" -c synchronous_standby_names=standby1")

	// -c fast: do not wait for a spread checkpoint; -R: write standby.signal
	// and a primary_conninfo, which the appended one overrides to name the
	// standby as synchronous_standby_names expects.
	if out, err := pgCommand(filepath.Join(bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(p.PrimaryPort), "-U", "postgres",
		"-D", p.data("standby"), "-R", "-X", "stream", "-c", "fast", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("testenv: pg_basebackup: %v\n%s", err, out)
	}
	auto, err := os.OpenFile(filepath.Join(p.data("standby"), "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(auto, "primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=standby1'\n", p.PrimaryPort)
	if cerr := auto.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	p.pgctl("standby", "start", "-o", p.options(p.StandbyPort))

	Eventually(t, 30*time.Second, "the primary to stream to its synchronous standby", func() bool {
		var n int
		err := p.queryRow(p.PrimaryPort, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1' AND state = 'streaming' AND sync_state = 'sync'", &n)
		return err == nil && n == 1
	})
	t.Logf("testenv: Postgres primary :%d with synchronous standby :%d ready in %s",
		p.PrimaryPort, p.StandbyPort, time.Since(begin).Round(time.Millisecond))
	return p
}

// options are the server options both servers run with. hot_standby lets
// the standby answer queries; max_connections must not be lower on a
// standby than on its primary.
func (p *PostgresPair) options(port int) string {
	return fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"+
		" -c wal_level=replica -c max_wal_senders=5 -c hot_standby=on -c synchronous_commit=on", port, p.dir)
}

func (p *PostgresPair) data(which string) string { return filepath.Join(p.dir, which) }

// pgctl runs pg_ctl action on the primary or the standby and waits for it.
func (p *PostgresPair) pgctl(which, action string, args ...string) {
	p.t.Helper()
	bin, _ := postgresBin()
	log := filepath.Join(p.dir, which+".log")
	all := append([]string{"-D", p.data(which), "-l", log, "-w", "-t", "60"}, args...)
	if out, err := pgCommand(filepath.Join(bin, "pg_ctl"), append(all, action)...).CombinedOutput(); err != nil {
		text, _ := os.ReadFile(log)
		p.t.Fatalf("testenv: pg_ctl %s %s: %v\n%s\n%s", action, which, err, out, text)
	}
}

// stopAll stops whichever server still runs, at once.
func (p *PostgresPair) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	bin, _ := postgresBin()
	for _, which := range []string{"standby", "primary"} {
		if _, err := os.Stat(filepath.Join(p.data(which), "postmaster.pid")); err != nil {
			continue
		}
		if out, err := pgCommand(filepath.Join(bin, "pg_ctl"), "-D", p.data(which), "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
			p.t.Errorf("testenv: pg_ctl stop %s: %v\n%s", which, err, out)
		}
	}
}

// URL is database db on whichever of the two servers accepts writes: a
// multi-host URL with target_session_attrs=read-write, which a client tries
// host after host (2 s each at most).
func (p *PostgresPair) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write&connect_timeout=2",
		p.PrimaryPort, p.StandbyPort, db)
}

// HostURL is database db on the server at port alone.
func (p *PostgresPair) HostURL(port int, db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=2", port, db)
}

// CreateDatabase creates database name on the primary (and so, through
// replication, on the standby) and returns its URL.
func (p *PostgresPair) CreateDatabase(name string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.HostURL(p.PrimaryPort, "postgres"))
	if err != nil {
		p.t.Fatalf("testenv: connect to the primary: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		p.t.Fatalf("testenv: create database %s: %v", name, err)
	}
	return p.URL(name)
}

// StopPrimaryHard stops the primary at once (pg_ctl stop -m immediate): no
// shutdown checkpoint, connections cut, as when its machine crashes.
func (p *PostgresPair) StopPrimaryHard() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pgctl("primary", "stop", "-m", "immediate")
}

// Promote promotes the standby and waits until it accepts writes.
func (p *PostgresPair) Promote() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pgctl("standby", "promote")
	Eventually(p.t, 30*time.Second, "the promoted standby to leave recovery", func() bool {
		var recovering bool
		err := p.queryRow(p.StandbyPort, "SELECT pg_is_in_recovery()", &recovering)
		return err == nil && !recovering
	})
	// With a synchronous_standby_names of its own, the new primary's commits
	// would wait for a standby that does not exist.
	var names string
	if err := p.queryRow(p.StandbyPort, "SHOW synchronous_standby_names", &names); err != nil {
		p.t.Fatalf("testenv: promoted standby: %v", err)
	}
	if names != "" {
		p.t.Fatalf("testenv: promoted standby has synchronous_standby_names %q: its commits would block", names)
	}
}

// queryRow runs a one-row query on database postgres of the server at port.
func (p *PostgresPair) queryRow(port int, query string, dest ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.HostURL(port, "postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.QueryRow(ctx, query).Scan(dest...)
}

// dumpLogsIfFailed logs the end of every *.log file in dir if t failed.
func dumpLogsIfFailed(t testing.TB, dir string) {
	if !t.Failed() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("testenv: %s:\n%s", filepath.Base(l), b)
	}
}
