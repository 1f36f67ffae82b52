package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
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

// Postgres is a private Postgres server in a temporary directory, which a
// test may stop and start again.
type Postgres struct {
	t    testing.TB
	dir  string
	Port int
	mu   sync.Mutex
	up   bool
}

// StartPostgres initialises and starts a private server on a free port. As
// root it runs the server as the postgres user, since postgres refuses root.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin, err := postgresBin()
	RequireServer(t, "no Postgres server binaries", err)
	dir, err := os.MkdirTemp("", "sw-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	p := &Postgres{t: t, dir: dir, Port: FreePort(t)}
	if out, err := p.command(filepath.Join(bin, "initdb"), "-D", p.data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	t.Cleanup(p.Stop)
	p.Start()
	return p
}

func (p *Postgres) data() string { return filepath.Join(p.dir, "data") }

// URL is the URL of database name on this server.
func (p *Postgres) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, name)
}

// Start starts the server and waits until it accepts connections.
func (p *Postgres) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	bin, _ := postgresBin()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", p.Port, p.dir)
	cmd := p.command(filepath.Join(bin, "pg_ctl"), "-D", p.data(), "-l", filepath.Join(p.dir, "log"), "-o", opts, "-w", "-t", "60", "start")
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "log"))
		p.t.Fatalf("testenv: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	p.up = true
	Eventually(p.t, 30*time.Second, "private Postgres to accept connections", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, p.URL("postgres"))
		if err != nil {
			return false
		}
		_ = c.Close(ctx)
		return true
	})
}

// Stop stops the server at once (fast shutdown), dropping its connections.
func (p *Postgres) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.up {
		return
	}
	bin, _ := postgresBin()
	if out, err := p.command(filepath.Join(bin, "pg_ctl"), "-D", p.data(), "-m", "fast", "-w", "stop").CombinedOutput(); err != nil {
		p.t.Errorf("testenv: pg_ctl stop: %v\n%s", err, out)
	}
	p.up = false
}

// Pause freezes the server (SIGSTOP to the postmaster and every backend):
// connections stay open and new ones are accepted by the kernel, but
// nothing answers, as with a hung host or a network that drops packets.
// Resume undoes it; the test's cleanup resumes a paused server.
func (p *Postgres) Pause() {
	p.t.Helper()
	p.signalAll(syscall.SIGSTOP)
	p.t.Cleanup(p.Resume)
}

// Resume lets a paused server run again.
func (p *Postgres) Resume() { p.signalAll(syscall.SIGCONT) }

// signalAll sends sig to the postmaster and its children.
func (p *Postgres) signalAll(sig syscall.Signal) {
	b, err := os.ReadFile(filepath.Join(p.data(), "postmaster.pid"))
	if err != nil {
		p.t.Fatalf("testenv: postmaster.pid: %v", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		p.t.Fatalf("testenv: postmaster.pid: %v", err)
	}
	pids := []int{pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so read after ')'.
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
			f := strings.Fields(string(stat[i+1:]))
			if len(f) > 1 && f[1] == strconv.Itoa(pid) {
				pids = append(pids, child)
			}
		}
	}
	// The postmaster first, so that it forks no new backend meanwhile.
	for _, id := range pids {
		_ = syscall.Kill(id, sig)
	}
}

func (p *Postgres) command(name string, args ...string) *exec.Cmd { return pgCommand(name, args...) }

// pgCommand runs a Postgres binary, as the postgres user when we are root
// (postgres refuses root).
func pgCommand(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func postgresBin() (string, error) {
	if _, err := user.Lookup("postgres"); err != nil && os.Geteuid() == 0 {
		return "", fmt.Errorf("no postgres user to run the server as")
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) == 0 {
		if p, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", fmt.Errorf("pg_ctl not found in /usr/lib/postgresql/*/bin or PATH")
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

// Redis is a private Redis server that keeps nothing on disk.
type Redis struct {
	t    testing.TB
	Port int
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts a private redis-server on a free port.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	RequireServer(t, "redis-server not installed", err)
	r := &Redis{t: t, Port: FreePort(t)}
	t.Cleanup(r.Stop)
	r.Start()
	return r
}

// RunRedis starts a private redis-server on a free port without a test,
// for tools such as the bench. The caller stops it with Stop; Start and
// Pause are for the servers of StartRedis.
func RunRedis() (*Redis, error) {
	port, err := PickPort()
	if err != nil {
		return nil, err
	}
	r := &Redis{Port: port}
	if err := r.start(); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// Start starts the server (empty) and waits until it answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", os.TempDir())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testenv: redis-server: %w", err)
	}
	r.cmd = cmd
	r.done = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(r.done)
	return WaitFor(15*time.Second, "private Redis to answer", func() bool {
		c, err := redis.Dial("tcp", r.Addr(), redis.DialConnectTimeout(200*time.Millisecond))
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = c.Do("PING")
		return err == nil
	})
}

// Pause freezes the server (SIGSTOP): the kernel still accepts connections,
// but nothing answers, as with a hung host or a network that drops packets.
// The test's cleanup resumes a paused server.
func (r *Redis) Pause() {
	r.t.Helper()
	r.signal(syscall.SIGSTOP)
	r.t.Cleanup(r.Resume)
}

// Resume lets a paused server run again.
func (r *Redis) Resume() { r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(sig)
	}
}

// Stop kills the server; what it held is gone.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}
