package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/jackc/pgx/v5"
)

func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	s := StartRedisSentinel(t)

	master := s.Master()
	if _, err := redisDo(master, "SET", "sw:failover", "before"); err != nil {
		t.Fatal(err)
	}
	// Replication is asynchronous: make sure the replica has the key
	// before the master dies.
	if n, err := redis.Int(redisDo(master, "WAIT", 1, 5000)); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d replicas acknowledged, err %v", n, err)
	}

	killed := s.KillMaster()
	if killed != master {
		t.Fatalf("KillMaster killed %s, the master was %s", killed, master)
	}
	begin := time.Now()
	next := s.WaitForFailover(15 * time.Second)
	t.Logf("failover from %s to %s took %s", killed, next, time.Since(begin).Round(time.Millisecond))
	if next == killed {
		t.Fatalf("the new master is the killed one, %s", next)
	}
	if m := s.Master(); m != next {
		t.Fatalf("Master() = %s after the failover to %s", m, next)
	}
	if v, err := redis.String(redisDo(next, "GET", "sw:failover")); err != nil || v != "before" {
		t.Fatalf("GET on the new master = %q, %v; want \"before\"", v, err)
	}
	if _, err := redisDo(next, "SET", "sw:failover", "after"); err != nil {
		t.Fatalf("SET on the new master: %v", err)
	}

	begin = time.Now()
	s.StartNodeAgain(killed)
	s.WaitForReplica(killed, 25*time.Second)
	t.Logf("restarted %s became a replica of %s in %s", killed, next, time.Since(begin).Round(time.Millisecond))
	Eventually(t, 5*time.Second, "the restarted node to hold the new master's data", func() bool {
		v, err := redis.String(redisDo(killed, "GET", "sw:failover"))
		return err == nil && v == "after"
	})
}

// A frozen master answers nothing but is failed over from; once resumed it
// answers again. Frozen sentinels answer nothing until resumed.
func TestRedisSentinelPause(t *testing.T) {
	t.Parallel()
	s := StartRedisSentinel(t)

	frozen := s.PauseMaster()
	if _, err := redisDo(frozen, "PING"); err == nil {
		t.Fatalf("the paused master %s answered PING", frozen)
	}
	next := s.WaitForFailover(15 * time.Second)
	if next == frozen {
		t.Fatalf("the new master is the paused one, %s", next)
	}
	s.ResumeNode(frozen)
	if _, err := redisDo(frozen, "PING"); err != nil {
		t.Fatalf("the resumed node %s: %v", frozen, err)
	}

	s.PauseSentinels()
	last := s.SentinelAddrs()[2] // PauseSentinels froze them all: one is enough to ask
	if _, err := sentinelMaster(last, s.MasterName); err == nil {
		t.Fatalf("the paused sentinel %s answered", last)
	}
	s.ResumeSentinels()
	if m := s.Master(); m != next {
		t.Fatalf("Master() = %s after the sentinels resumed, want %s", m, next)
	}
}

func TestPostgresPairFailover(t *testing.T) {
	t.Parallel()
	p := StartPostgresPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	url := p.CreateDatabase("failover")
	if url != p.URL("failover") {
		t.Fatalf("CreateDatabase returned %s, want %s", url, p.URL("failover"))
	}
	c := connect(t, ctx, url)
	if port := serverPort(t, ctx, c); port != p.PrimaryPort {
		t.Fatalf("the multi-host URL reached port %d, want the primary's %d", port, p.PrimaryPort)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO t VALUES (1, 'before')"); err != nil {
		t.Fatal(err)
	}
	_ = c.Close(ctx)

	begin := time.Now()
	p.StopPrimaryHard()
	// Neither server accepts writes now: the multi-host URL finds none.
	if c, err := pgx.Connect(ctx, url); err == nil {
		_ = c.Close(ctx)
		t.Fatal("connected read-write with the primary stopped and the standby not promoted")
	}
	p.Promote()
	t.Logf("stop of the primary and promotion of the standby took %s", time.Since(begin).Round(time.Millisecond))

	s := connect(t, ctx, p.HostURL(p.StandbyPort, "failover"))
	var v string
	if err := s.QueryRow(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil || v != "before" {
		t.Fatalf("row 1 on the promoted standby = %q, %v; want \"before\"", v, err)
	}
	if _, err := s.Exec(ctx, "INSERT INTO t VALUES (2, 'after')"); err != nil {
		t.Fatalf("insert on the promoted standby: %v", err)
	}
	_ = s.Close(ctx)

	c = connect(t, ctx, url)
	defer c.Close(ctx)
	if port := serverPort(t, ctx, c); port != p.StandbyPort {
		t.Fatalf("the multi-host URL reached port %d, want the promoted standby's %d", port, p.StandbyPort)
	}
	if _, err := c.Exec(ctx, "INSERT INTO t VALUES (3, 'via url')"); err != nil {
		t.Fatalf("insert through the multi-host URL: %v", err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 3 {
		t.Fatalf("count = %d, %v; want 3", n, err)
	}
}

func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c
}

func serverPort(t *testing.T, ctx context.Context, c *pgx.Conn) int {
	t.Helper()
	var port int
	if err := c.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil {
		t.Fatal(err)
	}
	return port
}
