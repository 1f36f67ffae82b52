// Package testenv gives tests their own real Postgres database and their own
// gocraft/work namespace on the shared servers, and private Postgres and Redis
// servers for tests that stop them.
//
// The shared servers are found through TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) and
// TEST_REDIS_ADDR (default 127.0.0.1:6379). Nothing on them is touched but
// what a test creates. A migrated database is a copy of a template built
// once per server and set of migrations (template.go), which stays on the
// server: sw_template_<hash>, one per migration set.
//
// The functions that take no testing.TB (CreateDatabase, Launch, RunRedis,
// PickPort, ClearNamespace, WaitFor) serve tools such as the bench.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// ServerURL is the shared Postgres server's maintenance database.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// RedisAddr is the shared Redis server.
func RedisAddr() string {
	if a := os.Getenv("TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// RandomName returns prefix followed by 12 random hex characters.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Namespace returns a unique gocraft/work namespace on the Redis at addr
// (RedisAddr when empty) and deletes its keys when the test ends.
func Namespace(t testing.TB, addr string) string {
	t.Helper()
	if addr == "" {
		addr = RedisAddr()
	}
	ns := RandomName("swtest-")
	t.Cleanup(func() { DeleteNamespace(t, addr, ns) })
	return ns
}

// DeleteNamespace deletes every key of namespace ns, and nothing else.
func DeleteNamespace(t testing.TB, addr, ns string) {
	t.Helper()
	conn, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(2*time.Second),
		redis.DialReadTimeout(5*time.Second), redis.DialWriteTimeout(5*time.Second))
	if err != nil {
		t.Logf("testenv: clean namespace %s: %v", ns, err)
		return
	}
	defer conn.Close()
	if err := ClearNamespace(conn, ns); err != nil {
		t.Logf("testenv: clean namespace %s: %v", ns, err)
	}
}

// ClearNamespace deletes every key of namespace ns through conn, and
// nothing else. It needs no test, for tools such as the bench.
func ClearNamespace(conn redis.Conn, ns string) error {
	cursor := "0"
	for {
		reply, err := redis.Values(conn.Do("SCAN", cursor, "MATCH", ns+":*", "COUNT", 1000))
		if err != nil {
			return err
		}
		cursor, _ = redis.String(reply[0], nil)
		keys, _ := redis.Strings(reply[1], nil)
		for _, k := range keys {
			if strings.HasPrefix(k, ns+":") {
				_, _ = conn.Do("DEL", k)
			}
		}
		if cursor == "0" {
			return nil
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a server a test starts (a private Postgres or Redis, a service binary).
// It is drawn at random from below the kernel's ephemeral range, so that no
// outbound connection of a test running in parallel can take it meanwhile.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := PickPort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return port
}

// PickPort is FreePort without a test, for tools such as the bench.
func PickPort() (int, error) {
	low, high := portRange()
	for range 1000 {
		port := low + mrand.IntN(high-low)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use
		}
		_ = l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port in [%d, %d)", low, high)
}

// portRange is where FreePort draws from: [10000, the first ephemeral port).
func portRange() (int, int) {
	const low = 10000
	ephemeral := 32768 // Linux's default first ephemeral port
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				ephemeral = n
			}
		}
	}
	if ephemeral-low < 1000 {
		// An unusual kernel setting: draw from above the ephemeral range.
		return 61000, 65535
	}
	return low, ephemeral
}

// RequireServer skips the test when a server binary it needs is missing,
// except under CI (CI set), where a missing server fails the run: a fault
// test skipped silently proves nothing.
func RequireServer(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("testenv: %s: %v (CI is set: install it, see .ci/run)", what, err)
	}
	t.Skipf("testenv: %s: %v", what, err)
}

// RedisHostPort splits a host:port address.
func RedisHostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, port
}

// Eventually polls cond every 20ms until it is true or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := WaitFor(timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

// WaitFor polls cond every 20ms until it is true, or returns an error
// naming what once the timeout has passed: Eventually without a test.
func WaitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "the database URL"
	}
	return p.Redacted()
}

// Environ builds KEY=value pairs from a map, for the services' run functions.
func Environ(vars map[string]string) []string {
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, fmt.Sprintf("%s=%s", k, v))
	}
	return out
}

// Consistently polls cond every 20ms for the whole duration and fails the
// test the first time it is false: for what must not happen.
func Consistently(t testing.TB, duration time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(duration)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
