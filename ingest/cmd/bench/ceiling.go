package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"stripe-webhooks/pkg/stripeevent"
)

// serveCeiling serves the webhook route doing only what costs before
// storage: read the limited body and verify the signature.
func serveCeiling(ctx context.Context) error {
	gin.SetMode(gin.ReleaseMode)
	v := stripeevent.NewVerifier(strings.Split(os.Getenv("STRIPE_WEBHOOK_SECRET"), ","))
	r := gin.New()
	r.POST("/api/billing/webhooks/stripe", func(c *gin.Context) {
		payload, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 1<<20))
		if err != nil {
			c.AbortWithStatus(http.StatusRequestEntityTooLarge)
			return
		}
		if _, err := v.Verify(payload, c.GetHeader("Stripe-Signature")); err != nil {
			c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"received": true})
	})
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	srv := &http.Server{Addr: ":" + os.Getenv("PORT"), Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
