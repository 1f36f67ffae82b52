package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/FZambia/sentinel"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
)

// masterRecheck is how often a pool that lends connections asks Sentinel
// again where the master is. A connection to any other address is closed
// when next borrowed, so new work reaches a new master within about this
// long after Sentinel promotes it. A pool lending nothing asks nothing.
const masterRecheck = time.Second

// sentinelTimeout bounds each exchange with one sentinel: the Sentinel
// client guidelines require a timeout, and a hung sentinel must not hold a
// dial for long when others answer.
const sentinelTimeout = 500 * time.Millisecond

// master finds the Redis master: the address in REDIS_HOST and REDIS_PORT,
// or the one Redis Sentinel names.
type master struct {
	fixed string // REDIS_HOST:REDIS_PORT, without Sentinel

	// mu serialises the questions to Sentinel: the client reorders its
	// address list while it asks, which is not safe from two goroutines.
	mu       sync.Mutex
	sentinel *sentinel.Sentinel
	addr     string    // the master Sentinel last named
	askedAt  time.Time // when it named it
}

func newMaster(cfg config.Redis) *master {
	if !cfg.UsesSentinel() {
		return &master{fixed: cfg.Addr()}
	}
	var opts []redis.DialOption
	if cfg.SentinelPassword != "" {
		opts = append(opts, redis.DialPassword(cfg.SentinelPassword))
	}
	opts = append(opts, redis.DialConnectTimeout(sentinelTimeout),
		redis.DialReadTimeout(sentinelTimeout), redis.DialWriteTimeout(sentinelTimeout))
	dial := func(addr string) (redis.Conn, error) { return redis.Dial("tcp", addr, opts...) }
	return &master{sentinel: &sentinel.Sentinel{
		Addrs:      append([]string(nil), cfg.SentinelAddrs...),
		MasterName: cfg.SentinelMaster,
		Dial:       dial,
		// One connection a sentinel (resolve asks one question at a time),
		// without the default pool's PING before every question.
		Pool: func(addr string) *redis.Pool {
			return &redis.Pool{MaxIdle: 1, MaxActive: 1, Wait: true, IdleTimeout: time.Minute,
				Dial: func() (redis.Conn, error) { return dial(addr) }}
		},
	}}
}

// resolve asks Sentinel for the master (or returns the fixed address).
// Only one question is asked at a time; callers that wait for it take its
// answer when it is at most maxAge old.
func (m *master) resolve(ctx context.Context, maxAge time.Duration) (string, error) {
	if m.sentinel == nil {
		return m.fixed, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.addr != "" && time.Since(m.askedAt) < maxAge {
		return m.addr, nil
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	addr, err := m.sentinel.MasterAddr()
	if err != nil {
		var none sentinel.NoSentinelsAvailable
		if errors.As(err, &none) {
			return "", fmt.Errorf("queue: no sentinel named the master %q: %w", m.sentinel.MasterName, err)
		}
		return "", fmt.Errorf("queue: sentinel: %w", err)
	}
	m.addr, m.askedAt = addr, time.Now()
	return addr, nil
}

// forget makes the next resolve ask Sentinel.
func (m *master) forget() {
	if m.sentinel == nil {
		return
	}
	m.mu.Lock()
	m.askedAt = time.Time{}
	m.mu.Unlock()
}

// dial connects to the master within ctx.
func (m *master) dial(ctx context.Context, opts []redis.DialOption) (redis.Conn, error) {
	addr, err := m.resolve(ctx, 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	c, err := redis.DialContext(ctx, "tcp", addr, opts...)
	if err != nil {
		m.forget()
		return nil, err
	}
	if m.sentinel == nil {
		return c, nil
	}
	// Sentinel may name a master that has just been demoted: ask it.
	if !sentinel.TestRole(c, "master") {
		_ = c.Close()
		return nil, fmt.Errorf("queue: %s, named master by Sentinel, is not a master", addr)
	}
	return &masterConn{Conn: c, addr: addr, master: m}, nil
}

// masterConn is a connection to the master Sentinel named. It reports
// itself broken once Redis refuses a write as a replica (READONLY), so the
// pool closes it instead of lending it again.
type masterConn struct {
	redis.Conn
	addr   string
	master *master
	mu     sync.Mutex
	err    error
}

func (c *masterConn) check(reply any, err error) (any, error) {
	var rerr redis.Error
	if errors.As(err, &rerr) && strings.HasPrefix(string(rerr), "READONLY") {
		c.mu.Lock()
		c.err = fmt.Errorf("queue: %s is no longer the master: %w", c.addr, err)
		c.mu.Unlock()
		c.master.forget()
	}
	return reply, err
}

func (c *masterConn) Do(cmd string, args ...any) (any, error) {
	return c.check(c.Conn.Do(cmd, args...))
}

func (c *masterConn) Receive() (any, error) { return c.check(c.Conn.Receive()) }

func (c *masterConn) DoContext(ctx context.Context, cmd string, args ...any) (any, error) {
	return c.check(redis.DoContext(c.Conn, ctx, cmd, args...))
}

func (c *masterConn) ReceiveContext(ctx context.Context) (any, error) {
	return c.check(redis.ReceiveContext(c.Conn, ctx))
}

func (c *masterConn) DoWithTimeout(timeout time.Duration, cmd string, args ...any) (any, error) {
	return c.check(redis.DoWithTimeout(c.Conn, timeout, cmd, args...))
}

func (c *masterConn) ReceiveWithTimeout(timeout time.Duration) (any, error) {
	return c.check(redis.ReceiveWithTimeout(c.Conn, timeout))
}

func (c *masterConn) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.Conn.Err()
}

// testOnBorrow keeps a pool's connections on the master: with Sentinel, a
// connection to an address that is no longer the master (asked again at
// most every masterRecheck) is closed; a connection idle for a minute is
// pinged, and with Sentinel one idle for a second has its ROLE checked.
func (m *master) testOnBorrow(c redis.Conn, idleSince time.Time) error {
	idle := time.Since(idleSince)
	if mc, ok := c.(*masterConn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 2*sentinelTimeout)
		addr, err := m.resolve(ctx, masterRecheck)
		cancel()
		if err == nil && addr != mc.addr {
			return fmt.Errorf("queue: %s is no longer the master (Sentinel names %s)", mc.addr, addr)
		}
		if idle >= masterRecheck && !sentinel.TestRole(mc.Conn, "master") {
			m.forget()
			return fmt.Errorf("queue: %s is no longer the master", mc.addr)
		}
		return nil
	}
	if idle < time.Minute {
		return nil
	}
	_, err := c.Do("PING")
	return err
}
