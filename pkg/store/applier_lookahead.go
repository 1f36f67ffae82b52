package store

import (
	"sync"
	"time"
)

// lookAhead is what an Applier keeps between groups to decide whether a
// group looks ahead, from where, and which events it must leave to their
// own jobs. Every group looks while there is a backlog: until a look comes
// up short, and again once a job finds its own event unprocessed. Each
// look starts at the newest event this process has claimed.
type lookAhead struct {
	limit int // ApplierOptions.Ahead; 0: groups never look
	mu    sync.Mutex
	// backlog: the last look filled its group, or a job has since found
	// its own event unprocessed; without one, groups do not look.
	backlog bool
	// from is where the next look starts: the newest created_at this
	// process has claimed. Older unprocessed events are left to their own
	// jobs, so that a look does not walk the index entries of every event
	// processed since the last vacuum.
	from time.Time
	// failed are the events that failed a group when applied ahead.
	failed map[string]bool
}

// look is one group's look ahead.
type look struct {
	from  time.Time // the oldest created_at it claims
	leave []string  // events it must not claim
}

// maxFailedAhead bounds the events remembered as failing ahead; past it the
// memory starts again (at worst one more failed group per such event).
const maxFailedAhead = 10000

func newLookAhead(limit int) *lookAhead {
	return &lookAhead{limit: limit, backlog: true, failed: map[string]bool{}}
}

// next returns the next group's look; nil when it does not look.
func (l *lookAhead) next() *look {
	if l.limit <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.backlog {
		return nil
	}
	leave := make([]string, 0, len(l.failed))
	for id := range l.failed {
		leave = append(leave, id)
	}
	return &look{from: l.from, leave: leave}
}

// quiet reports whether groups would look ahead but have found no backlog:
// a job's event was then most likely applied ahead of it.
func (l *lookAhead) quiet() bool {
	if l.limit <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.backlog
}

// leave notes an event that failed a group when applied ahead: no look
// claims it again.
func (l *lookAhead) leave(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failed) >= maxFailedAhead {
		clear(l.failed)
	}
	l.failed[id] = true
}

// learn notes what a committed group found: own of its jobs' events were
// still unprocessed, others came from its look (looked), and newest is the
// latest created_at it claimed.
func (l *lookAhead) learn(looked bool, own, others int, newest time.Time) {
	if l.limit <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case looked:
		l.backlog = others == l.limit
	case own > 0:
		l.backlog = true
	}
	if newest.After(l.from) {
		l.from = newest
	}
}
