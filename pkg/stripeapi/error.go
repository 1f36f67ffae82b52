package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/stripe/stripe-go/v76"
)

// Error is a Stripe API call that failed: which account and endpoint, and
// what the last answer said. It never holds the API key: Message has
// anything that looks like a key or a bearer token removed.
type Error struct {
	// Account is the connected account the call concerned; empty for the
	// platform.
	Account string
	// Endpoint is the method and path, such as "GET /v1/events".
	Endpoint string
	// Status is the HTTP status of the last answer; 0 when none came
	// (network error, timeout, cancellation).
	Status int
	// Code is Stripe's error code, such as "rate_limit" or
	// "resource_missing"; empty when the answer had none.
	Code string
	// Type is Stripe's error type, such as "invalid_request_error".
	Type string
	// RequestID is the Request-Id of the last answer, for Stripe support.
	RequestID string
	// Requests is how many HTTP requests the call made.
	Requests int
	// Message is Stripe's message or the transport's error, redacted.
	Message string

	// cause is the context's error when the call was cancelled, or the
	// transport's error when no answer came; never a Stripe error body.
	cause error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("stripe api: ")
	b.WriteString(e.Endpoint)
	if e.Account != "" {
		b.WriteString(" for account ")
		b.WriteString(e.Account)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ": status %d", e.Status)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Requests > 1 {
		fmt.Fprintf(&b, " after %d requests", e.Requests)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, ", request %s", e.RequestID)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap gives the context's error of a cancelled call (errors.Is(err,
// context.Canceled) holds), or the transport's error.
func (e *Error) Unwrap() error { return e.cause }

// NotFound reports whether Stripe answered 404 (a deleted account, an
// unknown id).
func (e *Error) NotFound() bool { return e.Status == 404 }

// AccessRevoked reports whether Stripe refused a call made for a connected
// account because the platform has no access to it any more: the account
// deauthorized the platform (or no longer exists). Stripe answers 401 or
// 403 with code account_invalid, or with the message "The provided key …
// does not have access to account '…' (or that account does not exist).
// Application access may have been revoked." A refused key (401, "Invalid
// API Key provided") or a key lacking a permission ("does not have the
// required permissions") is not this.
func (e *Error) AccessRevoked() bool {
	if e.Account == "" || (e.Status != 401 && e.Status != 403) {
		return false
	}
	return e.Code == "account_invalid" || strings.Contains(e.Message, "does not have access to account") ||
		strings.Contains(e.Message, "Application access may have been revoked")
}

// newError describes the failure err of the call r after the requests
// recorded in tally.
func (c *Client) newError(r request, tally *tally, err error) *Error {
	e := &Error{
		Account:   r.account,
		Endpoint:  r.endpoint(),
		Status:    tally.status,
		RequestID: tally.requestID,
		Requests:  tally.requests,
	}
	var se *stripe.Error
	if errors.As(err, &se) {
		e.Code = string(se.Code)
		e.Type = string(se.Type)
		e.Message = se.Msg
		if se.RequestID != "" {
			e.RequestID = se.RequestID
		}
		if se.HTTPStatusCode != 0 {
			e.Status = se.HTTPStatusCode
		}
	} else {
		e.Message = err.Error()
		// Keep the cause of a cancellation or of a request that got no
		// answer; other errors may quote the answer's body.
		if e.Status == 0 || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			e.cause = err
		}
	}
	e.Message = redact(e.Message, c.key)
	if len(e.Message) > maxMessage {
		e.Message = strings.ToValidUTF8(e.Message[:maxMessage], "") + " …"
	}
	return e
}

// maxMessage bounds Error.Message: an answer that is not Stripe's error
// shape is quoted by stripe-go, and may be long.
const maxMessage = 300

// malformed describes an answer the client could not read.
func (c *Client) malformed(r request, what string) *Error {
	return &Error{Account: r.account, Endpoint: r.endpoint(), Status: 200, Message: what}
}

// secretPattern matches Stripe secret and restricted keys and bearer
// tokens (some servers and proxies echo the Authorization header).
var secretPattern = regexp.MustCompile(`(?i)\bbearer\s+[^\s'"]+|\b(sk|rk)_(live|test)_[0-9a-z]+|\b(sk|rk)_[0-9a-z]{16,}`)

// redact removes key, and anything shaped like a key or a bearer token,
// from s.
func redact(s, key string) string {
	if len(key) >= 8 {
		s = strings.ReplaceAll(s, key, "[redacted]")
	}
	return secretPattern.ReplaceAllString(s, "[redacted]")
}
