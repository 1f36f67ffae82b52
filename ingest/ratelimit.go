package main

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rejectLimiter limits, per client address, the rejected requests: those
// that fail verification and those from an address outside
// STRIPE_IP_ALLOWLIST. Verified deliveries never pass through it.
type rejectLimiter struct {
	perMinute int
	mu        sync.Mutex
	clients   map[string]*rate.Limiter
	lastSweep time.Time
}

func newRejectLimiter(perMinute int) *rejectLimiter {
	return &rejectLimiter{perMinute: perMinute, clients: map[string]*rate.Limiter{}, lastSweep: time.Now()}
}

// allow takes one rejection from ip's budget; when none is left it returns
// false and how long until one is.
func (l *rejectLimiter) allow(ip string) (time.Duration, bool) {
	if l.perMinute <= 0 {
		return 0, true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	lim, ok := l.clients[ip]
	if !ok {
		lim = rate.NewLimiter(rate.Every(time.Minute/time.Duration(l.perMinute)), l.perMinute)
		l.clients[ip] = lim
	}
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// sweep forgets, once a minute, the addresses whose budget is full again,
// so memory follows recent offenders only.
func (l *rejectLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	for ip, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.perMinute) {
			delete(l.clients, ip)
		}
	}
}
