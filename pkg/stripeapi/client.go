// Package stripeapi is the read-only Stripe API client of reconcile and
// resync: it lists events, connected accounts and their external accounts
// while staying under Stripe's rate limits.
//
// Every HTTP request, stripe-go's own retries included, waits on one
// client-side rate limiter and is counted. stripe-go retries what it
// retries (network errors, 409, lock timeouts, Stripe-Should-Retry: true,
// 5xx on GET) after 0.5 s and 1 s; on top of that the client retries a 429
// (stripe-go does not retry a plain rate_limit) and a 5xx with exponential
// backoff and jitter, honouring Retry-After, until a call has made
// maxAttempts requests. The API key is sent only in the Authorization
// header: errors and log lines never carry it.
package stripeapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/form"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/time/rate"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/telemetry"
)

const (
	// DefaultBase is where requests go when the configuration names no base.
	DefaultBase = "https://api.stripe.com"
	// DefaultRate is the requests per second when the configuration names none.
	DefaultRate = 20.0

	// RequestTimeout bounds one HTTP request, from sending it to reading the
	// last byte of the answer; the wait on the rate limiter is not part of it.
	RequestTimeout = 30 * time.Second
	// stripeGoRetries is stripe-go's MaxNetworkRetries (its default).
	stripeGoRetries = 2
	// maxAttempts is the number of HTTP requests after which a call that
	// keeps failing with 429 or 5xx is no longer retried. stripe-go may add
	// its own retries to the last one, so a call makes at most
	// maxAttempts+stripeGoRetries requests.
	maxAttempts = 6
	// maxRetryAfter caps the wait a Retry-After header can ask for.
	maxRetryAfter = time.Minute
)

// Client calls Stripe's API with a restricted key. It is safe for concurrent
// use; all calls share one rate limiter.
type Client struct {
	key     string
	base    string
	backend stripe.Backend
	limiter *rate.Limiter
	logger  *slog.Logger
	calls   atomic.Int64

	// timeout bounds each HTTP request (RequestTimeout).
	timeout time.Duration
	// backoffMin and backoffMax bound the client's own waits between
	// retries: backoffMin doubled per retry, capped at backoffMax, half of it
	// random.
	backoffMin time.Duration
	backoffMax time.Duration
}

// New returns a client for cfg. A zero Base or Rate means DefaultBase or
// DefaultRate. logger receives the client's retries and, at debug level,
// stripe-go's request lines (never bodies, never the key); nil discards.
func New(cfg config.StripeAPI, logger *slog.Logger) *Client {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	base := strings.TrimSuffix(cfg.Base, "/")
	if base == "" {
		base = DefaultBase
	}
	perSecond := cfg.Rate
	if perSecond <= 0 {
		perSecond = DefaultRate
	}
	c := &Client{
		key:  cfg.Key,
		base: base,
		// A burst of 1 spaces requests evenly: Stripe counts per second.
		limiter:    rate.NewLimiter(rate.Limit(perSecond), 1),
		logger:     logger,
		timeout:    RequestTimeout,
		backoffMin: time.Second,
		backoffMax: 30 * time.Second,
	}
	var next http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
	if telemetry.Enabled() {
		// Each request sent (retries included) is a client span of the
		// run that sends it; no trace header goes to Stripe.
		next = otelhttp.NewTransport(next, otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()))
	}
	c.backend = stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(base),
		HTTPClient:        &http.Client{Transport: &transport{client: c, next: next}},
		LeveledLogger:     stripeLogger{logger: logger, key: cfg.Key},
		MaxNetworkRetries: stripe.Int64(stripeGoRetries),
		EnableTelemetry:   stripe.Bool(false),
	})
	return c
}

// Calls is the number of HTTP requests the client has sent, retries
// included.
func (c *Client) Calls() int64 { return c.calls.Load() }

// String describes the client without its key, for %v and slog.
func (c *Client) String() string {
	return fmt.Sprintf("stripeapi.Client{base: %s, rate: %v/s}", c.base, float64(c.limiter.Limit()))
}

// request is one logical API call: a GET, possibly sent several times.
type request struct {
	// account is the connected account the call concerns, for errors.
	account string
	// onBehalf sends account as the Stripe-Account header.
	onBehalf bool
	// path is the URL path, such as /v1/events.
	path string
	// query holds the query parameters, in order.
	query []param
}

type param struct{ key, value string }

// endpoint names the call in errors and logs: method and path, no query.
func (r request) endpoint() string { return http.MethodGet + " " + r.path }

// get sends r until it succeeds, fails for good or ctx ends, and decodes
// the answer into v.
func (c *Client) get(ctx context.Context, r request, v stripe.LastResponseSetter) error {
	tally := &tally{}
	ctx = context.WithValue(ctx, tallyKey{}, tally)
	params := &stripe.Params{Context: ctx}
	if r.onBehalf && r.account != "" {
		params.SetStripeAccount(r.account)
	}
	var query *form.Values
	if len(r.query) > 0 {
		query = &form.Values{}
		for _, p := range r.query {
			query.Add(p.key, p.value)
		}
	}
	for retry := 1; ; retry++ {
		err := c.backend.CallRaw(http.MethodGet, r.path, c.key, query, params, v)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return c.newError(r, tally, ctx.Err())
		}
		if !tally.retryable() || tally.requests >= maxAttempts {
			return c.newError(r, tally, err)
		}
		wait := c.backoff(retry, tally.retryAfter)
		c.logger.Warn("stripe api: retrying", "endpoint", r.endpoint(), "stripe_account_id", r.account,
			"status", tally.status, "requests", tally.requests, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return c.newError(r, tally, ctx.Err())
		case <-t.C:
		}
	}
}

// backoff is the wait before the client's retry number retry (1 for the
// first): Retry-After when the answer had one, else backoffMin doubled per
// retry up to backoffMax, its upper half random.
func (c *Client) backoff(retry int, retryAfter time.Duration) time.Duration {
	if retryAfter >= 0 {
		return min(retryAfter, maxRetryAfter)
	}
	d := c.backoffMin
	for i := 1; i < retry && d < c.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.backoffMax)
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// tally records the requests of one call, from the transport: how many
// were sent and what the last answer said about retrying. The requests of
// one call are sent one after another, by the caller's goroutine.
type tally struct {
	requests    int
	status      int           // HTTP status of the last answer; 0 for none
	retryAfter  time.Duration // Retry-After of the last answer; -1 for none
	shouldRetry string        // Stripe-Should-Retry of the last answer
	requestID   string
}

type tallyKey struct{}

func (t *tally) record(resp *http.Response) {
	t.requests++
	t.status, t.retryAfter, t.shouldRetry, t.requestID = 0, -1, "", ""
	if resp == nil {
		return
	}
	t.status = resp.StatusCode
	t.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	t.shouldRetry = resp.Header.Get("Stripe-Should-Retry")
	t.requestID = resp.Header.Get("Request-Id")
}

// retryable reports whether the last answer is one the client retries: a
// 429 or a 5xx that Stripe did not mark Stripe-Should-Retry: false.
func (t *tally) retryable() bool {
	if t.shouldRetry == "false" {
		return false
	}
	return t.status == http.StatusTooManyRequests || t.status >= 500
}

// parseRetryAfter reads a Retry-After value (seconds or an HTTP date);
// -1 means none or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return -1
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 {
			return -1
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return -1
}

// transport waits on the client's rate limiter before each request, counts
// it, bounds it by the client's timeout and records its answer in the call's
// tally.
type transport struct {
	client *Client
	next   http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.client.limiter.Wait(req.Context()); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	t.client.calls.Add(1)
	ctx, cancel := context.WithTimeout(req.Context(), t.client.timeout)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if tally, ok := req.Context().Value(tallyKey{}).(*tally); ok {
		tally.record(resp)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelBody releases a request's timeout once its body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// stripeLogger passes stripe-go's log lines to slog with the key and any
// bearer token removed. Its debug lines (whole response bodies) are
// dropped; requests and errors go to debug (errors reach the caller, who
// logs them), its retries to info.
type stripeLogger struct {
	logger *slog.Logger
	key    string
}

func (l stripeLogger) Debugf(string, ...any) {}

func (l stripeLogger) Infof(format string, v ...any) { l.log(slog.LevelDebug, format, v) }

func (l stripeLogger) Errorf(format string, v ...any) { l.log(slog.LevelDebug, format, v) }

func (l stripeLogger) Warnf(format string, v ...any) { l.log(slog.LevelInfo, format, v) }

func (l stripeLogger) log(level slog.Level, format string, v []any) {
	if !l.logger.Enabled(context.Background(), level) {
		return
	}
	l.logger.Log(context.Background(), level, "stripe-go: "+redact(fmt.Sprintf(format, v...), l.key))
}
