// Command trigger plays the part of `stripe trigger` for a local stack: it
// builds a realistic event from Stripe's example objects, signs it with the
// configured endpoint secret, posts it to the ingest and prints the answer.
//
//	go run ./ingest/cmd/trigger -event account.updated
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"stripe-webhooks/pkg/stripefixture"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "trigger:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("trigger", flag.ContinueOnError)
	port := getenv("PORT")
	if port == "" {
		port = "8080"
	}
	event := fs.String("event", "account.updated", "event type, such as "+strings.Join(stripefixture.Types, ", "))
	url := fs.String("url", "http://127.0.0.1:"+port+"/api/billing/webhooks/stripe", "the ingest's webhook route")
	account := fs.String("account", stripefixture.DefaultAccount, "connected account the event is about")
	card := fs.Bool("card", false, "external-account events carry a card instead of a bank account")
	id := fs.String("id", "", "event id (default: a fresh evt_… id; repeat one to see a duplicate)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	secret, _, _ := strings.Cut(getenv("STRIPE_WEBHOOK_SECRET"), ",")
	if secret = strings.TrimSpace(secret); secret == "" {
		return errors.New("STRIPE_WEBHOOK_SECRET is not set: it must be the secret the ingest runs with")
	}
	payload, err := stripefixture.Event(stripefixture.Options{Type: *event, Account: *account, Card: *card, ID: *id})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, secret, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("is the ingest running (make run)? %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(payload, &e)
	fmt.Fprintf(stdout, "%s %s (%d bytes) -> %s %s\n", *event, e.ID, len(payload), resp.Status, bytes.TrimSpace(body))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the ingest answered %s", resp.Status)
	}
	return nil
}
