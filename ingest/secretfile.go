package main

import (
	"context"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/stripeevent"
)

// secretFilePoll is how often the secret file is read again.
const secretFilePoll = time.Second

// secretFile reads STRIPE_WEBHOOK_SECRET_FILE again every poll interval and
// gives the verifier the secrets it holds when they change. It reads the
// file by its path, following symlinks, so it sees Kubernetes replacing a
// mounted Secret (a swap of the volume's ..data symlink) as well as a file
// rewritten in place. A file that cannot be read or holds no secret leaves
// the verifier with the secrets it has, and is logged once per distinct
// failure.
type secretFile struct {
	path     string
	verifier *stripeevent.Verifier
	logger   *slog.Logger
	poll     time.Duration

	// current are the secrets the verifier has.
	current []string
	// failure is the failure last logged; empty after a good read.
	failure string
	// usable, if set, is 1 after a good read and 0 after a failed one.
	usable prometheus.Gauge

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// newSecretFile returns a watcher of path for a verifier that already has
// the secrets read from it at start.
func newSecretFile(path string, current []string, v *stripeevent.Verifier, logger *slog.Logger) *secretFile {
	return &secretFile{path: path, verifier: v, logger: logger, poll: secretFilePoll, current: slices.Clone(current)}
}

// Start reads the file every poll interval until ctx is done or Stop is
// called. Starting a started watcher does nothing.
func (w *secretFile) Start(ctx context.Context) error {
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
func (w *secretFile) Stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if done == nil {
		return
	}
	cancel()
	<-done
}

func (w *secretFile) loop(ctx context.Context, done chan struct{}) {
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

// reload reads the file once and hands changed secrets to the verifier.
// Neither the secrets nor the file's content are ever logged.
func (w *secretFile) reload() {
	secrets, err := w.read()
	if w.usable != nil {
		w.usable.Set(map[bool]float64{true: 1, false: 0}[err == nil])
	}
	if err != nil {
		if msg := err.Error(); msg != w.failure {
			w.failure = msg
			w.logger.Error("webhook secrets file unusable: keeping the previous secrets",
				"error", msg, "secrets", len(w.current))
		}
		return
	}
	recovered := w.failure != ""
	w.failure = ""
	if slices.Equal(secrets, w.current) {
		if recovered {
			w.logger.Info("webhook secrets file usable again: secrets unchanged", "secrets", len(secrets))
		}
		return
	}
	if err := w.verifier.SetSecrets(secrets); err != nil {
		// read returns no list SetSecrets refuses; this keeps the previous
		// secrets all the same.
		w.failure = err.Error()
		w.logger.Error("webhook secrets file unusable: keeping the previous secrets",
			"error", w.failure, "secrets", len(w.current))
		return
	}
	w.current = secrets
	w.logger.Info("webhook secrets reloaded", "secrets", len(secrets))
}

// read returns the secrets in the file, as config reads them at start:
// separated by commas or line breaks, surrounding white space dropped.
func (w *secretFile) read() ([]string, error) {
	v, err := config.ReadFileVar("STRIPE_WEBHOOK_SECRET", w.path)
	if err != nil {
		return nil, err
	}
	var secrets []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			secrets = append(secrets, s)
		}
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("STRIPE_WEBHOOK_SECRET_FILE: %s holds no secret", w.path)
	}
	return secrets, nil
}
