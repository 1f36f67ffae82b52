// Package loadgen drives a load of signed Stripe deliveries at a webhook
// route, closed loop (clients back to back) or open loop (a fixed rate),
// and reports throughput, status counts and latency.
package loadgen

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"stripe-webhooks/pkg/stripefixture"
)

// Options shape one load run.
type Options struct {
	URL    string
	Secret string
	// Concurrency is the number of clients of the closed loop; in the open
	// loop, the most deliveries in flight at once (one connection each).
	Concurrency int
	Duration    time.Duration
	Requests    int     // 0: run for Duration
	Duplicates  float64 // share of requests repeating an already-sent event
	EventType   string
	TLS         *tls.Config // for an https URL; nil uses the system's roots
	// Rate, when positive, makes the loop open: a delivery is due every
	// 1/Rate seconds whether or not earlier ones were answered, and its
	// latency counts from when it was due (it waits for a connection when
	// Concurrency are in flight). 0: closed loop.
	Rate float64
	// Accounts spreads the deliveries at random over this many connected
	// accounts (ids as long as the fixture's own). 0 or 1: the fixture's
	// one account.
	Accounts int
	// Record keeps every delivery's id, status and times in the Report.
	Record bool
}

// Delivery is one request of a run, kept when Options.Record is set.
type Delivery struct {
	ID string
	// Status is the answer's HTTP status; 0 for a transport error.
	Status int
	// Sent is when the request was written (closed loop) or due (open loop).
	Sent time.Time
	// Answered is when the answer had been read, or the request failed.
	Answered time.Time
}

// Report is what one run measured.
type Report struct {
	Concurrency int            `json:"concurrency"`
	Rate        float64        `json:"rate_per_second,omitempty"`
	Requests    int            `json:"requests"`
	Errors      int            `json:"errors"`
	Seconds     float64        `json:"seconds"`
	PerSecond   float64        `json:"per_second"`
	Status      map[string]int `json:"status"`
	P50Ms       float64        `json:"p50_ms"`
	P90Ms       float64        `json:"p90_ms"`
	P99Ms       float64        `json:"p99_ms"`
	MaxMs       float64        `json:"max_ms"`
	PayloadSize int            `json:"payload_bytes"`
	Deliveries  []Delivery     `json:"-"`
}

func (r Report) String() string {
	var codes []string
	for c, n := range r.Status {
		codes = append(codes, fmt.Sprintf("%s: %d", c, n))
	}
	sort.Strings(codes)
	return fmt.Sprintf("%d requests (%d-byte events) in %.2fs with %d clients: %.0f/s\nstatus %s; transport errors: %d\nlatency p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n",
		r.Requests, r.PayloadSize, r.Seconds, r.Concurrency, r.PerSecond, strings.Join(codes, ", "), r.Errors, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
}

// idPlaceholder is replaced, in place and at equal length, by each request's event id.
const idPlaceholder = "evt_LOADGENxxxxxxxxxxxxxxxxxxxx"

// Run sends the load and reports.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.Concurrency <= 0 {
		return Report{}, errors.New("concurrency must be positive")
	}
	target, err := parseTarget(o.URL, o.TLS)
	if err != nil {
		return Report{}, err
	}
	templates, err := newTemplates(o.EventType, o.Accounts)
	if err != nil {
		return Report{}, err
	}
	if o.Rate > 0 {
		return runOpen(ctx, o, target, templates), nil
	}

	if o.Requests <= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	var (
		issued     atomic.Int64
		mu         sync.Mutex
		lat        []time.Duration
		status     = map[string]int{}
		errs       int
		deliveries []Delivery
		wg         sync.WaitGroup
		started    = time.Now()
	)
	for w := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(started.UnixNano()), uint64(w)))
			var sent []string // this client's ids, for duplicates
			local := make([]time.Duration, 0, 1024)
			localStatus := map[int]int{}
			localErrs := 0
			var localDeliveries []Delivery
			c := &client{target: target}
			defer c.close()
			for ctx.Err() == nil {
				if o.Requests > 0 && issued.Add(1) > int64(o.Requests) {
					break
				}
				id := fmt.Sprintf("evt_lg%02d%0*d", w%100, len(idPlaceholder)-8, rng.Uint64()%1e18)
				if len(sent) > 0 && rng.Float64() < o.Duplicates {
					id = sent[rng.IntN(len(sent))]
				} else if len(sent) < 10000 {
					sent = append(sent, id)
				}
				t0 := time.Now()
				code, err := c.deliver(ctx, templates.pick(rng), id, o.Secret, t0)
				if o.Record {
					localDeliveries = append(localDeliveries, Delivery{ID: id, Status: code, Sent: t0, Answered: time.Now()})
				}
				if err != nil {
					localErrs++
					continue
				}
				local = append(local, time.Since(t0))
				localStatus[code]++
			}
			mu.Lock()
			lat = append(lat, local...)
			for k, v := range localStatus {
				status[strconv.Itoa(k)] += v
			}
			errs += localErrs
			deliveries = append(deliveries, localDeliveries...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	rep := Summarise(o.Concurrency, lat, status, errs, time.Since(started), len(templates[0].body))
	rep.Deliveries = deliveries
	return rep, nil
}

// runOpen sends a delivery every 1/o.Rate seconds, each on an idle
// connection (the most recently used first, so that a low rate reuses one
// connection), opening one while fewer than o.Concurrency are in flight and
// waiting for one otherwise. A delivery's latency counts from when it was
// due, so a wait for a connection is part of it.
func runOpen(ctx context.Context, o Options, target target, templates templates) Report {
	var (
		mu         sync.Mutex
		idle       []*client
		slots      = make(chan struct{}, o.Concurrency)
		lat        []time.Duration
		status     = map[string]int{}
		errs       int
		deliveries []Delivery
		sent       []string // for duplicates
		wg         sync.WaitGroup
		started    = time.Now()
		rng        = rand.New(rand.NewPCG(uint64(started.UnixNano()), 0x09e4))
		interval   = time.Duration(float64(time.Second) / o.Rate)
		timer      = time.NewTimer(0)
	)
	defer timer.Stop()
	<-timer.C
dispatch:
	for i := 0; ; i++ {
		due := started.Add(time.Duration(i) * interval)
		if o.Requests > 0 && i >= o.Requests || o.Requests <= 0 && !due.Before(started.Add(o.Duration)) {
			break
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break dispatch
			}
		}
		id := fmt.Sprintf("evt_lo%0*d", len(idPlaceholder)-6, rng.Uint64()%1e18)
		if len(sent) > 0 && rng.Float64() < o.Duplicates {
			id = sent[rng.IntN(len(sent))]
		} else if len(sent) < 10000 {
			sent = append(sent, id)
		}
		tpl := templates.pick(rng)
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break dispatch
		}
		mu.Lock()
		var c *client
		if n := len(idle); n > 0 {
			c, idle = idle[n-1], idle[:n-1]
		} else {
			c = &client{target: target}
		}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := c.deliver(ctx, tpl, id, o.Secret, time.Now())
			answered := time.Now()
			mu.Lock()
			idle = append(idle, c)
			if o.Record {
				deliveries = append(deliveries, Delivery{ID: id, Status: code, Sent: due, Answered: answered})
			}
			if err != nil {
				errs++
			} else {
				lat = append(lat, answered.Sub(due))
				status[strconv.Itoa(code)]++
			}
			mu.Unlock()
			<-slots
		}()
	}
	wg.Wait()
	for _, c := range idle {
		c.close()
	}
	rep := Summarise(o.Concurrency, lat, status, errs, time.Since(started), len(templates[0].body))
	rep.Rate = o.Rate
	rep.Deliveries = deliveries
	return rep
}

// template is one event's JSON with an id placeholder at offset at.
type template struct {
	body []byte
	at   int
}

// templates are the events a run sends: one per connected account.
type templates []template

func newTemplates(eventType string, accounts int) (templates, error) {
	n := max(accounts, 1)
	ts := make(templates, n)
	for i := range ts {
		o := stripefixture.Options{Type: eventType, ID: idPlaceholder}
		if n > 1 {
			o.Account = AccountID(i)
		}
		b, err := stripefixture.Event(o)
		if err != nil {
			return nil, err
		}
		ts[i] = template{body: b, at: bytes.Index(b, []byte(idPlaceholder))}
	}
	return ts, nil
}

func (ts templates) pick(rng *rand.Rand) *template {
	if len(ts) == 1 {
		return &ts[0]
	}
	return &ts[rng.IntN(len(ts))]
}

// AccountID is the i-th connected account of a run with Options.Accounts
// above 1: as long as the fixture's own account id.
func AccountID(i int) string {
	return fmt.Sprintf("acct_loadgen%0*d", len(stripefixture.DefaultAccount)-12, i)
}

// target is where the deliveries go.
type target struct {
	addr, host, path string
	tls              *tls.Config // nil for http
}

func parseTarget(raw string, tlsConfig *tls.Config) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("url: %w", err)
	}
	t := target{host: u.Host, path: u.RequestURI()}
	switch u.Scheme {
	case "http":
		t.addr = net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "80"))
	case "https":
		t.addr = net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "443"))
		t.tls = tlsConfig
		if t.tls == nil {
			t.tls = &tls.Config{}
		}
		t.tls = t.tls.Clone()
		t.tls.ServerName = cmp.Or(t.tls.ServerName, u.Hostname())
	default:
		return target{}, fmt.Errorf("url: %q is not an http or https address", raw)
	}
	return t, nil
}

// client is one keep-alive HTTP/1.1 connection writing each request with one
// write and reading the answer with net/http's parser. It is far cheaper per
// request than net/http's Transport, so the load generator takes less of
// the CPU it shares with what it measures.
type client struct {
	target target
	conn   net.Conn
	br     *bufio.Reader
	buf    []byte
	// payload is the event being sent and tpl the template it was copied
	// from: a request of the same template only writes its id.
	payload []byte
	tpl     *template
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// deliver sends tpl's event with the given id, signed at t.
func (c *client) deliver(ctx context.Context, tpl *template, id, secret string, t time.Time) (int, error) {
	if c.tpl != tpl {
		c.payload = append(c.payload[:0], tpl.body...)
		c.tpl = tpl
	}
	copy(c.payload[tpl.at:], id)
	return c.post(ctx, c.payload, stripefixture.Sign(c.payload, secret, t))
}

// post sends one delivery and returns the answer's status code. A broken
// connection is closed and redialled on the next request.
func (c *client) post(ctx context.Context, payload []byte, signature string) (int, error) {
	if c.conn == nil {
		d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", c.target.addr)
		if err != nil {
			return 0, err
		}
		if c.target.tls != nil {
			tc := tls.Client(conn, c.target.tls)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return 0, err
			}
			conn = tc
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	c.buf = append(c.buf[:0], "POST "...)
	c.buf = append(c.buf, c.target.path...)
	c.buf = append(c.buf, " HTTP/1.1\r\nHost: "...)
	c.buf = append(c.buf, c.target.host...)
	c.buf = append(c.buf, "\r\nUser-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\nContent-Type: application/json; charset=utf-8\r\nStripe-Signature: "...)
	c.buf = append(c.buf, signature...)
	c.buf = append(c.buf, "\r\nContent-Length: "...)
	c.buf = strconv.AppendInt(c.buf, int64(len(payload)), 10)
	c.buf = append(c.buf, "\r\n\r\n"...)
	c.buf = append(c.buf, payload...)
	if _, err := c.conn.Write(c.buf); err != nil {
		c.close()
		return 0, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	return resp.StatusCode, err
}

// Summarise turns latencies and counts into a Report.
func Summarise(concurrency int, lat []time.Duration, status map[string]int, errs int, elapsed time.Duration, payloadSize int) Report {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p*float64(len(lat))+0.5) - 1
		i = max(0, min(i, len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	return Report{
		Concurrency: concurrency,
		Requests:    len(lat),
		Errors:      errs,
		Seconds:     elapsed.Seconds(),
		PerSecond:   float64(len(lat)) / elapsed.Seconds(),
		Status:      status,
		P50Ms:       pct(0.50),
		P90Ms:       pct(0.90),
		P99Ms:       pct(0.99),
		MaxMs:       pct(1),
		PayloadSize: payloadSize,
	}
}
