// Package loadgen drives a closed-loop load of signed Stripe deliveries at
// a webhook route and reports throughput, status counts and latency.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"stripe-webhooks/pkg/stripefixture"
)

// Options shape one load run.
type Options struct {
	URL         string
	Secret      string
	Concurrency int
	Duration    time.Duration
	Requests    int     // 0: run for Duration
	Duplicates  float64 // share of requests repeating an already-sent event
	EventType   string
}

// Report is what one run measured.
type Report struct {
	Concurrency int            `json:"concurrency"`
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
	template, err := stripefixture.Event(stripefixture.Options{Type: o.EventType, ID: idPlaceholder})
	if err != nil {
		return Report{}, err
	}
	at := bytes.Index(template, []byte(idPlaceholder))
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        o.Concurrency,
		MaxIdleConnsPerHost: o.Concurrency,
		MaxConnsPerHost:     o.Concurrency,
		IdleConnTimeout:     90 * time.Second,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	if o.Requests <= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	var (
		issued  atomic.Int64
		mu      sync.Mutex
		lat     []time.Duration
		status  = map[string]int{}
		errs    int
		wg      sync.WaitGroup
		started = time.Now()
	)
	for w := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(started.UnixNano()), uint64(w)))
			var sent []string // this client's ids, for duplicates
			local := make([]time.Duration, 0, 1024)
			localStatus := map[string]int{}
			localErrs := 0
			payload := slices.Clone(template)
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
				copy(payload[at:], id)
				req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, o.URL, bytes.NewReader(payload))
				req.Header.Set("Content-Type", "application/json; charset=utf-8")
				req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, o.Secret, time.Now()))
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					localErrs++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				local = append(local, time.Since(t0))
				localStatus[fmt.Sprint(resp.StatusCode)]++
			}
			mu.Lock()
			lat = append(lat, local...)
			for k, v := range localStatus {
				status[k] += v
			}
			errs += localErrs
			mu.Unlock()
		}()
	}
	wg.Wait()
	return Summarise(o.Concurrency, lat, status, errs, time.Since(started), len(template)), nil
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
