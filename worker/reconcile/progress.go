package reconcile

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"stripe-webhooks/pkg/stripeapi"
)

// progressEvery is how often a run without a terminal logs its progress.
const progressEvery = 30 * time.Second

// Progress is a run's progress, read by the progress display: accounts
// done of total, events listed, and events found missing (or, for a
// resync, accounts that had drifted).
type Progress struct {
	Total, Done, Listed, Missing atomic.Int64
}

// ShowProgress draws a progress bar on out when it is a terminal, or logs
// a progress line every 30 s otherwise, until the returned function is
// called.
func ShowProgress(out io.Writer, logger *slog.Logger, what string, p *Progress, api *stripeapi.Client) (done func()) {
	stopped := make(chan struct{})
	finished := make(chan struct{})
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		go drawBar(out, what, p, api, stopped, finished)
	} else {
		go logProgress(logger, what, p, api, stopped, finished)
	}
	return func() {
		close(stopped)
		<-finished
	}
}

// drawBar draws p on a terminal until stopped is closed.
func drawBar(out io.Writer, what string, p *Progress, api *stripeapi.Client, stopped, finished chan struct{}) {
	defer close(finished)
	began := time.Now()
	bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(out), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionSetItsString("accounts"), progressbar.OptionClearOnFinish(),
		progressbar.OptionThrottle(100*time.Millisecond))
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if total := p.Total.Load(); total > 0 && bar.GetMax64() != total {
			bar.ChangeMax64(total)
		}
		_ = bar.Set64(p.Done.Load())
		secs := max(time.Since(began).Seconds(), 0.001)
		bar.Describe(fmt.Sprintf("%s: %d missing, %d API calls, %.1f calls/s", what, p.Missing.Load(), api.Calls(),
			float64(api.Calls())/secs))
		select {
		case <-stopped:
			_ = bar.Finish()
			return
		case <-tick.C:
		}
	}
}

// logProgress logs p every progressEvery until stopped is closed.
func logProgress(logger *slog.Logger, what string, p *Progress, api *stripeapi.Client, stopped, finished chan struct{}) {
	defer close(finished)
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-stopped:
			return
		case <-tick.C:
			logger.Info(what+" progress", "accounts_done", p.Done.Load(), "accounts", p.Total.Load(),
				"listed", p.Listed.Load(), "missing", p.Missing.Load(), "api_calls", api.Calls())
		}
	}
}
