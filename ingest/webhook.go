package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeevent"
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

// handleWebhook reads the limited raw body, verifies it, stores it once,
// queues it, and answers. 200 only ever follows a committed row.
func handleWebhook(d Deps, m *metrics, limiter *rejectLimiter) gin.HandlerFunc {
	maxBody := d.Config.MaxBodyBytes
	return func(c *gin.Context) {
		payload, err := readBody(c.Writer, c.Request, maxBody)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				reject(c, d.Logger, m, limiter, http.StatusRequestEntityTooLarge, "too_large",
					fmt.Sprintf("body is larger than %d bytes", maxBody))
				return
			}
			reject(c, d.Logger, m, limiter, http.StatusBadRequest, "unreadable_body", "could not read the request body")
			return
		}
		event, err := d.Verifier.Verify(payload, c.GetHeader("Stripe-Signature"))
		if err != nil {
			var rej *stripeevent.RejectError
			if !errors.As(err, &rej) {
				rej = &stripeevent.RejectError{Reason: stripeevent.NotAnEvent, Message: "not a Stripe event"}
			}
			reject(c, d.Logger, m, limiter, http.StatusBadRequest, string(rej.Reason), rej.Message)
			return
		}
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
			ReceivedAt:    began,
		})
		m.storeSeconds.Observe(time.Since(began).Seconds())
		if err != nil {
			m.deliveries.WithLabelValues("store_failed", "").Inc()
			d.Logger.Error("could not store event; answering 503 so Stripe delivers again", append(ids, "error", err)...)
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": "event could not be stored; deliver again later"})
			return
		}
		ids = append(ids, "webhook_id", stored.WebhookID)

		// The Inserter's hook queued it in Redis with the rest of its batch.
		if stored.AfterCommitErr != nil {
			m.enqueueFailures.Inc()
			d.Logger.Error("event stored but not queued; the sweeper will queue it", append(ids, "error", stored.AfterCommitErr)...)
		}
		if !stored.Inserted {
			m.deliveries.WithLabelValues("duplicate", "").Inc()
			d.Logger.Info("duplicate delivery", append(ids, "processed", stored.Processed)...)
			c.Data(http.StatusOK, jsonContentType, receivedDuplicate)
			return
		}
		m.deliveries.WithLabelValues("stored", "").Inc()
		d.Logger.Info("event stored", ids...)
		c.Data(http.StatusOK, jsonContentType, received)
	}
}

// readBody reads the whole body, at most maxBody bytes. A body that states
// its length (Stripe's always do) is read into one buffer of that size;
// one that does not is read in growing chunks.
func readBody(w http.ResponseWriter, r *http.Request, maxBody int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	if n := r.ContentLength; n > 0 && n <= maxBody {
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(body)
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
	logger.Warn("delivery rejected", "reason", reason, "status", status, "client_ip", ip)
	c.AbortWithStatusJSON(status, gin.H{"error": message, "reason": reason})
}
