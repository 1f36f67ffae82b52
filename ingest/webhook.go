package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeevent"
	"stripe-webhooks/pkg/telemetry"
)

// storeTimeout bounds one delivery's database work: past it Stripe gets a
// 503 and delivers again, rather than waiting on a stuck database.
const storeTimeout = 10 * time.Second

// The answers to a stored delivery, rendered once.
var (
	jsonContentType   = "application/json; charset=utf-8"
	received          = []byte(`{"received":true}`)
	receivedDuplicate = []byte(`{"received":true,"duplicate":true}`)
)

// The answers to a Stripe-Signature header that could never verify.
var (
	errNoSignature        = &stripeevent.RejectError{Reason: stripeevent.NoSignature, Message: "missing Stripe-Signature header"}
	errMalformedSignature = &stripeevent.RejectError{Reason: stripeevent.BadSignature, Message: "Stripe-Signature header is malformed"}
)

// bodyChunk is where a body's buffer starts (or at its declared length, if
// smaller: one allocation for a typical delivery). It doubles as it fills,
// so it never holds more than bodyChunk or twice the bytes received.
const bodyChunk = 4 << 10

// handleWebhook checks the signature header, reads the limited raw body,
// verifies it, stores it once, queues it, and answers. 200 only ever follows
// a committed row.
func handleWebhook(d Deps, m *metrics, limiter *rejectLimiter) gin.HandlerFunc {
	maxBody, bodyTimeout := d.Config.MaxBodyBytes, d.Config.BodyTimeout
	// Each mode's counter, labelled with whether STRIPE_LIVEMODE ignores it.
	var byMode [2]prometheus.Counter // [test, live]
	for i, mode := range []string{"test", "live"} {
		byMode[i] = m.byMode.WithLabelValues(mode, strconv.FormatBool(!d.Config.Applies(i == 1)))
	}
	return func(c *gin.Context) {
		signature := c.GetHeader("Stripe-Signature")
		if rej := checkSignatureHeader(signature); rej != nil {
			hangUp(c)
			reject(c, d.Logger, m, limiter, http.StatusBadRequest, string(rej.Reason), rej.Message)
			return
		}
		payload, err := readBody(c.Writer, c.Request, maxBody, bodyTimeout)
		if err != nil {
			status, reason, message := bodyError(err, maxBody, bodyTimeout)
			hangUp(c)
			reject(c, d.Logger, m, limiter, status, reason, message)
			return
		}
		event, err := verify(c.Request.Context(), d.Verifier, payload, signature)
		if err != nil {
			var rej *stripeevent.RejectError
			if !errors.As(err, &rej) {
				rej = &stripeevent.RejectError{Reason: stripeevent.NotAnEvent, Message: "not a Stripe event"}
			}
			reject(c, d.Logger, m, limiter, http.StatusBadRequest, string(rej.Reason), rej.Message)
			return
		}
		describeDelivery(c.Request.Context(), event, payload)
		stored, ok := storeDelivery(c, d, m, event, payload)
		if !ok {
			return
		}
		if event.Livemode {
			byMode[1].Inc()
		} else {
			byMode[0].Inc()
		}
		if !stored.Inserted {
			m.deliveries.WithLabelValues("duplicate", "").Inc()
			c.Data(http.StatusOK, jsonContentType, receivedDuplicate)
			return
		}
		m.deliveries.WithLabelValues("stored", "").Inc()
		c.Data(http.StatusOK, jsonContentType, received)
	}
}

// storeDelivery stores a verified delivery once (the Inserter's group
// commit, whose hook queues its job) and logs what became of it; when it
// could not be stored it answers 503 and reports false. With tracing on,
// the event is stored with the traceparent of the delivery's span.
func storeDelivery(c *gin.Context, d Deps, m *metrics, event stripeevent.Event, payload []byte) (store.Stored, bool) {
	ids := []any{"stripe_event_id", event.ID, "event_type", event.Type}
	// The work below must not stop halfway because Stripe hung up: a
	// committed row is then still queued.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), storeTimeout)
	defer cancel()
	began := time.Now()
	stored, err := d.Inserter.Insert(ctx, store.NewEvent{
		StripeEventID: event.ID,
		EventType:     event.Type,
		Payload:       payload,
		Created:       event.Created,
		ReceivedAt:    began,
		Livemode:      event.Livemode,
		Traceparent:   telemetry.Traceparent(ctx),
	})
	m.storeSeconds.Observe(time.Since(began).Seconds())
	if err != nil {
		m.deliveries.WithLabelValues("store_failed", "").Inc()
		d.Logger.ErrorContext(ctx, "could not store event; answering 503 so Stripe delivers again", append(ids, "error", err)...)
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "event could not be stored; deliver again later"})
		return stored, false
	}
	ids = append(ids, "webhook_id", stored.WebhookID, "livemode", event.Livemode)
	// The Inserter's hook queued it in Redis with the rest of its batch.
	if stored.AfterCommitErr != nil {
		m.enqueueFailures.Inc()
		noteNotQueued(trace.SpanFromContext(ctx), stored.AfterCommitErr)
		d.Logger.ErrorContext(ctx, "event stored but not queued; the sweeper will queue it", append(ids, "error", stored.AfterCommitErr)...)
	}
	if !stored.Inserted {
		d.Logger.InfoContext(ctx, "duplicate delivery", append(ids, "processed", stored.Processed)...)
	} else {
		d.Logger.InfoContext(ctx, "event stored", ids...)
	}
	return stored, true
}

// checkSignatureHeader refuses a Stripe-Signature header that could never
// verify, so that its body is not read: it needs a t= element (an integer,
// as the verifier parses it) and at least one v1= element of 64 hex digits
// (an HMAC-SHA256). It is no stricter than the verifier otherwise: every
// element must be one key=value pair, and unknown keys and v1 values that
// are not hex are skipped.
func checkSignatureHeader(header string) *stripeevent.RejectError {
	if header == "" {
		return errNoSignature
	}
	var hasTimestamp, hasV1 bool
	for element := range strings.SplitSeq(header, ",") {
		key, value, ok := strings.Cut(element, "=")
		if !ok || strings.Contains(value, "=") {
			return errMalformedSignature
		}
		switch key {
		case "t":
			if _, err := strconv.ParseInt(value, 10, 64); err != nil {
				return errMalformedSignature
			}
			hasTimestamp = true
		case "v1":
			hasV1 = hasV1 || isSHA256Hex(value)
		}
	}
	if !hasTimestamp || !hasV1 {
		return errMalformedSignature
	}
	return nil
}

// isSHA256Hex reports whether s is 64 hex digits, of either case.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		switch c := s[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// readBody reads the whole body, at most maxBody bytes, within timeout of
// its call. A declared Content-Length over maxBody is refused unread; any
// other is only a bound: the buffer starts at no more than bodyChunk and
// doubles as bytes arrive, so memory follows what the sender has sent. A
// body of known length up to bodyChunk is read with one allocation.
func readBody(w http.ResponseWriter, r *http.Request, maxBody int64, timeout time.Duration) ([]byte, error) {
	declared := r.ContentLength // -1 when unknown (chunked)
	if declared > maxBody {
		return nil, &http.MaxBytesError{Limit: maxBody}
	}
	// The deadline replaces the server's ReadTimeout for this request,
	// which still applies where the writer cannot set one.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	body := http.MaxBytesReader(w, r.Body, maxBody)

	limit := maxBody + 1 // MaxBytesReader fails once it sees more than maxBody
	if declared >= 0 {
		limit = declared
	}
	buf := make([]byte, 0, min(limit, bodyChunk))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == declared {
				break // all the declared bytes are in; the server reads no more
			}
			grown := make([]byte, len(buf), min(limit, 2*int64(cap(buf))))
			copy(grown, buf)
			buf = grown
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	// The body is in. Past the deadline, net/http's watch for the client
	// hanging up would fail and cancel the request's context.
	_ = rc.SetReadDeadline(time.Time{})
	return buf, nil
}

// bodyError maps a failure to read the body to its answer.
func bodyError(err error, maxBody int64, timeout time.Duration) (status int, reason, message string) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body is larger than %d bytes", maxBody)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, "body_timeout", fmt.Sprintf("body did not arrive within %s", timeout)
	default:
		return http.StatusBadRequest, "unreadable_body", "could not read the request body"
	}
}

// hangUp makes the connection of a request whose body was not read to its
// end close after the answer, without waiting for the rest of the body
// (net/http would otherwise read up to 256 KiB of it first, to keep the
// connection open).
func hangUp(c *gin.Context) {
	c.Header("Connection", "close")
	_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now())
}

// reject answers a delivery that failed verification. Past the per-address
// limit the answer is 429 instead.
func reject(c *gin.Context, logger *slog.Logger, m *metrics, limiter *rejectLimiter, status int, reason, message string) {
	ip := c.ClientIP()
	if retryAfter, ok := limiter.allow(ip); !ok {
		m.deliveries.WithLabelValues("rejected", "rate_limited").Inc()
		c.Header("Retry-After", fmt.Sprintf("%d", int(retryAfter.Seconds()+0.999)))
		c.AbortWithStatusJSON(http.StatusTooManyRequests, gin.H{"error": "too many rejected requests from this address", "reason": "rate_limited"})
		return
	}
	m.deliveries.WithLabelValues("rejected", reason).Inc()
	logger.WarnContext(c.Request.Context(), "delivery rejected", "reason", reason, "status", status, "client_ip", ip)
	c.AbortWithStatusJSON(status, gin.H{"error": message, "reason": reason})
}
