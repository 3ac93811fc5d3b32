package main

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/awsproxy"
)

// sendLimiter answers SES's 429 as SES does when an account goes over
// its MaxSendRate: it counts the recipients of the SendEmail calls it
// let through in the trailing second, and refuses a call that would
// take them over the rate. It is the Match of a fault rule on the SES
// proxy, so it sees every call before the emulator does.
type sendLimiter struct {
	rate float64

	mu       sync.Mutex
	accepted []time.Time // one per recipient let through, oldest first
	all      []time.Time // every recipient let through, for the report
}

// over reports whether the call must be refused, and otherwise counts
// its recipients as sent now.
func (l *sendLimiter) over(c awsproxy.Call) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for i < len(l.accepted) && now.Sub(l.accepted[i]) >= time.Second {
		i++
	}
	l.accepted = l.accepted[i:]
	n := max(1, len(c.Recipients))
	if float64(len(l.accepted)+n) > l.rate {
		return true
	}
	for range n {
		l.accepted = append(l.accepted, now)
		l.all = append(l.all, now)
	}
	return false
}

// report writes what the pacer achieved against its target: the rate
// between the first and the last recipient SES let through, the most
// in any one second, and the 429s.
func (l *sendLimiter) report(w io.Writer, throttled int) (rate float64) {
	l.mu.Lock()
	all := slices.Clone(l.all)
	l.mu.Unlock()
	target := config.PacingRateFractionDefault * l.rate
	if len(all) < 2 {
		fmt.Fprintf(w, "pacing: MaxSendRate %g, target %.1f/s: %d recipients sent, too few to time\n", l.rate, target, len(all))
		return 0
	}
	span := all[len(all)-1].Sub(all[0])
	rate = float64(len(all)-1) / span.Seconds()
	most := 0
	for i, j := 0, 0; j < len(all); j++ {
		for all[j].Sub(all[i]) >= time.Second {
			i++
		}
		most = max(most, j-i+1)
	}
	fmt.Fprintf(w, "pacing: MaxSendRate %g, rate_fraction %g, target %.1f/s: %d recipients in %s, %.1f/s (%+.1f%% off the target), most in any 1 s %d, 429s %d\n",
		l.rate, config.PacingRateFractionDefault, target, len(all), span.Round(time.Millisecond), rate, 100*(rate-target)/target, most, throttled)
	return rate
}
