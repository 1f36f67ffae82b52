package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fileWatchPoll is how often a watched file is read again.
const fileWatchPoll = time.Second

// fileWatcher reads a file named by a <NAME>_FILE variable again every poll
// interval and puts its value in effect when it changes. It reads the file
// by its path, following symlinks, so it sees Kubernetes replacing a
// mounted Secret or ConfigMap (a swap of the volume's ..data symlink) as
// well as a file rewritten in place. A file that cannot be read or holds
// nothing usable leaves the value in effect as it is, and is logged once
// per distinct failure; the file's content is never logged.
type fileWatcher struct {
	// what names the value in log lines ("webhook secrets"); entries is
	// the log key of how many entries it holds ("secrets").
	what, entries string
	path          string
	logger        *slog.Logger
	poll          time.Duration
	// read returns the file's value in a canonical form and how many
	// entries it holds, or why it is unusable.
	read func() (value string, n int, err error)
	// apply puts a changed value in effect; an error keeps the previous one.
	apply func(value string) error
	// usable, if set, is 1 after a good read and 0 after a failed one.
	usable prometheus.Gauge

	current  string // the value in effect
	currentN int
	failure  string // the failure last logged; empty after a good read

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start reads the file every poll interval until ctx is done or Stop is
// called. Starting a started watcher does nothing.
func (w *fileWatcher) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done != nil {
		return nil
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go w.loop(ctx, w.done)
	return nil
}

// Stop ends the polling and waits for it. It may be called more than once,
// and before Start.
func (w *fileWatcher) Stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if done == nil {
		return
	}
	cancel()
	<-done
}

func (w *fileWatcher) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.reload()
		}
	}
}

// reload reads the file once and puts a changed value in effect.
func (w *fileWatcher) reload() {
	value, n, err := w.read()
	if err == nil && value != w.current {
		err = w.apply(value)
	}
	if w.usable != nil {
		w.usable.Set(map[bool]float64{true: 1, false: 0}[err == nil])
	}
	if err != nil {
		if msg := err.Error(); msg != w.failure {
			w.failure = msg
			w.logger.Error(w.what+" file unusable: keeping the previous "+w.entries, "error", msg, w.entries, w.currentN)
		}
		return
	}
	recovered := w.failure != ""
	w.failure = ""
	if value == w.current {
		if recovered {
			w.logger.Info(w.what+" file usable again: "+w.entries+" unchanged", w.entries, n)
		}
		return
	}
	w.current, w.currentN = value, n
	w.logger.Info(w.what+" reloaded", w.entries, n)
}
