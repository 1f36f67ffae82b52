package queue

import (
	"context"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/testenv"
)

// The check of a connection idle for over a minute (a PING, without
// Sentinel) keeps the caller's deadline when Redis hangs, and without one
// (gocraft/work's Get) a short timeout of its own, not the 10 s read
// timeout.
func TestBorrowCheckOfLongIdleConnectionKeepsDeadline(t *testing.T) {
	t.Parallel()
	rd := testenv.StartRedis(t)
	host, port := testenv.RedisHostPort(t, rd.Addr())
	pool := NewPool(config.Redis{Host: host, Port: port, Namespace: "sw-idle"}, 4)
	t.Cleanup(func() { _ = pool.Close() })
	const slack = 250 * time.Millisecond
	cases := []struct {
		name     string
		deadline time.Duration // 0: none
		bound    time.Duration
	}{
		{"250ms deadline", 250 * time.Millisecond, 250*time.Millisecond + slack},
		{"no deadline", 0, checkTimeout + slack},
	}
	dialed := make([]redis.Conn, len(cases))
	for i := range cases {
		c, err := pool.DialContext(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		dialed[i] = c
	}
	rd.Pause()
	lastUsed := time.Now().Add(-2 * time.Minute)
	for i, tc := range cases {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if tc.deadline > 0 {
			ctx, cancel = context.WithTimeout(ctx, tc.deadline)
		}
		began := time.Now()
		err := pool.TestOnBorrowContext(ctx, dialed[i], lastUsed)
		took := time.Since(began)
		cancel()
		t.Logf("%s: %v after %s", tc.name, err, took.Round(time.Millisecond))
		if err == nil {
			t.Errorf("%s: a connection to a hung Redis passed its check", tc.name)
		}
		if took > tc.bound {
			t.Errorf("%s: the check took %s, want %s at most", tc.name, took.Round(time.Millisecond), tc.bound)
		}
	}
}
