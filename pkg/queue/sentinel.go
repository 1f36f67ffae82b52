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

// masterRecheck is how often a pool that lends connections has Sentinel
// asked again where the master is, in the background: no borrower waits
// for the answer. A connection to any other address is closed when next
// borrowed, so new work reaches a new master within about this long after
// Sentinel promotes it. A pool lending nothing asks nothing. A question
// that failed is remembered as long as an answer is.
const masterRecheck = time.Second

// sentinelTimeout bounds each exchange with one sentinel: the Sentinel
// client guidelines require a timeout, and a hung sentinel must not hold a
// question for long when others answer.
const sentinelTimeout = 500 * time.Millisecond

// checkTimeout bounds a check of a connection (its ROLE, or a PING without
// Sentinel) when the caller's context allows longer or has no deadline, as
// gocraft/work's Get has none: a hung Redis costs each check this at most,
// not the 10 s read timeout.
const checkTimeout = time.Second

// dialTimeout bounds a new connection when the caller's context allows
// longer: the wait for Sentinel's answer when no master is trusted, the
// connect (2 s at most), then AUTH, SELECT and ROLE.
const dialTimeout = 3 * time.Second

// master finds the Redis master: the address in REDIS_HOST and REDIS_PORT,
// or the one Redis Sentinel names. Sentinel is asked by one question at a
// time, on a goroutine of its own (the client reorders its address list
// while it asks, which is not safe from two goroutines); callers that need
// the answer wait for it under their context, others take the last one.
type master struct {
	fixed    string // REDIS_HOST:REDIS_PORT, without Sentinel
	sentinel *sentinel.Sentinel

	mu      sync.Mutex
	addr    string        // the master Sentinel last named; "" before its first answer
	trusted bool          // false once a connection to addr failed a check or refused a write
	askedAt time.Time     // when the last question ended, answered or not
	err     error         // why the last question failed; nil if it was answered
	asking  chan struct{} // closed when the question in flight ends; nil when none is
	closed  bool
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
		// One connection a sentinel (one question is asked at a time),
		// without the default pool's PING before every question.
		Pool: func(addr string) *redis.Pool {
			return &redis.Pool{MaxIdle: 1, MaxActive: 1, Wait: true, IdleTimeout: time.Minute,
				Dial: func() (redis.Conn, error) { return dial(addr) }}
		},
	}}
}

// askLocked starts a question to Sentinel unless one is in flight, and
// returns the channel closed when it ends. m.mu is held.
func (m *master) askLocked() chan struct{} {
	if m.asking == nil {
		m.asking = make(chan struct{})
		go m.ask(m.asking)
	}
	return m.asking
}

// ask asks Sentinel where the master is, records the answer or the
// failure, and closes done.
func (m *master) ask(done chan struct{}) {
	addr, err := m.sentinel.MasterAddr()
	var none sentinel.NoSentinelsAvailable
	if errors.As(err, &none) {
		err = fmt.Errorf("queue: no sentinel named the master %q: %w", m.sentinel.MasterName, err)
	} else if err != nil {
		err = fmt.Errorf("queue: sentinel: %w", err)
	}
	m.mu.Lock()
	m.askedAt, m.err, m.asking = time.Now(), err, nil
	if err == nil {
		m.addr, m.trusted = addr, true
	}
	closed := m.closed
	m.mu.Unlock()
	close(done)
	if closed { // close ran meanwhile: drop what this question opened
		_ = m.sentinel.Close()
	}
}

// known returns, without waiting, the master Sentinel last named and
// whether it is still trusted; when that answer is masterRecheck old it
// has Sentinel asked again, in the background.
func (m *master) known() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.askedAt) >= masterRecheck {
		m.askLocked()
	}
	return m.addr, m.trusted
}

// resolve returns the address to dial: REDIS_HOST:REDIS_PORT, or the
// master Sentinel last named while it is trusted (asked again in the
// background when that answer is old). Otherwise it waits within ctx for a
// new answer, or fails at once while a failed question is recent.
func (m *master) resolve(ctx context.Context) (string, error) {
	if m.sentinel == nil {
		return m.fixed, nil
	}
	m.mu.Lock()
	if m.trusted {
		if time.Since(m.askedAt) >= masterRecheck {
			m.askLocked()
		}
		addr := m.addr
		m.mu.Unlock()
		return addr, nil
	}
	if m.asking == nil && m.err != nil && time.Since(m.askedAt) < masterRecheck {
		err := m.err
		m.mu.Unlock()
		return "", err
	}
	done := m.askLocked()
	m.mu.Unlock()
	select {
	case <-ctx.Done():
		return "", fmt.Errorf("queue: waiting for Sentinel to name the master: %w", ctx.Err())
	case <-done:
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.err != nil:
		return "", m.err
	case !m.trusted:
		return "", fmt.Errorf("queue: %s, named master by Sentinel, failed since", m.addr)
	}
	return m.addr, nil
}

// current asks Sentinel now (or joins the question in flight) and returns
// its answer, waiting for it within ctx. Without Sentinel it is
// REDIS_HOST:REDIS_PORT.
func (m *master) current(ctx context.Context) (string, error) {
	if m.sentinel == nil {
		return m.fixed, nil
	}
	m.mu.Lock()
	done := m.askLocked()
	m.mu.Unlock()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-done:
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr, m.err
}

// forget stops trusting addr as the master once a connection to it failed
// a check or refused a write as a replica: connections to it are closed
// when next borrowed, and Sentinel is asked again at once; the next dial
// waits for its answer.
func (m *master) forget(addr string) {
	if m.sentinel == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.addr == addr && m.trusted {
		m.trusted = false
		m.askLocked()
	}
}

// failed forgets addr after a connection to it failed, unless the caller's
// ctx had ended by then, which says nothing about the server.
func (m *master) failed(ctx context.Context, addr string) {
	if !ended(ctx) {
		m.forget(addr)
	}
}

// ended reports whether ctx is done or past its deadline: a read that timed
// out at the deadline can return before ctx's own timer has marked it done.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// close closes the connections to the sentinels, now and, if a question is
// in flight, when it ends.
func (m *master) close() error {
	if m.sentinel == nil {
		return nil
	}
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return m.sentinel.Close()
}

// dial connects to the master within ctx and dialTimeout. With Sentinel it
// checks the server's ROLE, as Sentinel may name a master that has just
// been demoted, and returns a *masterConn.
func (m *master) dial(ctx context.Context, opts []redis.DialOption) (redis.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	addr, err := m.resolve(dctx)
	if err != nil {
		return nil, err
	}
	c, err := redis.DialContext(dctx, "tcp", addr, opts...)
	if err != nil {
		m.failed(ctx, addr)
		return nil, err
	}
	if m.sentinel == nil {
		return c, nil
	}
	if err := checkRole(dctx, c); err != nil {
		_ = c.Close()
		m.failed(ctx, addr)
		return nil, fmt.Errorf("queue: %s, named master by Sentinel: %w", addr, err)
	}
	return &masterConn{Conn: c, addr: addr, master: m}, nil
}

// checkRole fails unless c's server says, within ctx and checkTimeout, that
// it is a master. A ROLE that times out closes c.
func checkRole(ctx context.Context, c redis.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	reply, err := redis.Values(redis.DoContext(c, ctx, "ROLE"))
	if err != nil {
		return fmt.Errorf("ROLE: %w", err)
	}
	if len(reply) == 0 {
		return errors.New("empty ROLE reply")
	}
	if role, _ := redis.String(reply[0], nil); role != "master" {
		return fmt.Errorf("ROLE is %q, not master", role)
	}
	return nil
}

// masterConn is a connection to the master Sentinel named. It reports
// itself broken once Redis refuses a write as a replica (READONLY), so the
// pool closes it instead of lending it again, and has the master
// forgotten, so the pool lends no other connection to that server.
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
		c.master.forget(c.addr)
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

// testOnBorrow is the pool's TestOnBorrowContext; ctx is the borrower's.
// With Sentinel, a connection to an address other than the master Sentinel
// last named, or to one no longer trusted, is closed, and one idle for
// masterRecheck or more has its ROLE checked; without, one idle for a
// minute is pinged. Checks run within ctx and checkTimeout.
//
// Once ctx has ended the connection is lent unchecked: a check could no
// longer tell a good connection from a bad one, and failing it would make
// GetContext close every idle connection in turn; the caller's command
// fails at once on its ended context, which closes that one alone.
func (m *master) testOnBorrow(ctx context.Context, c redis.Conn, lastUsed time.Time) error {
	if ended(ctx) {
		return nil
	}
	idle := time.Since(lastUsed)
	mc, ok := c.(*masterConn)
	if !ok {
		if idle < time.Minute {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, checkTimeout)
		defer cancel()
		_, err := redis.DoContext(c, ctx, "PING")
		return err
	}
	addr, trusted := m.known()
	if addr != mc.addr {
		return fmt.Errorf("queue: %s is no longer the master (Sentinel names %s)", mc.addr, addr)
	}
	if !trusted {
		return fmt.Errorf("queue: %s failed a check or refused a write as a replica", mc.addr)
	}
	if idle < masterRecheck {
		return nil
	}
	if err := checkRole(ctx, mc.Conn); err != nil {
		m.failed(ctx, mc.addr)
		return fmt.Errorf("queue: %s: %w", mc.addr, err)
	}
	return nil
}
