package jobs

import (
	"fmt"
	"testing"
	"time"

	"github.com/gocraft/work"
)

func TestBackoffDoubles(t *testing.T) {
	t.Parallel()
	calc := (RetryPolicy{BaseDelay: time.Minute}).Backoff()
	var got []int64
	for fails := int64(1); fails <= 4; fails++ {
		got = append(got, calc(&work.Job{Fails: fails}))
	}
	if fmt.Sprint(got) != "[60 120 240 480]" {
		t.Errorf("waits = %v seconds, want [60 120 240 480]", got)
	}
	if s := (RetryPolicy{BaseDelay: time.Second}).Backoff()(&work.Job{Fails: 1}); s != 1 {
		t.Errorf("1s base, first wait = %d, want 1", s)
	}
}
