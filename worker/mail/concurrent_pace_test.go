package mail

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/reportmailer/reportmailer/worker"
)

// simClock is virtual time for goroutines that only wait by sleeping
// on it: once every one of them is asleep, run advances the time to
// the earliest wake-up and wakes the sleepers due then. What a test
// measures with it is what the pacer decided, not how busy the
// machine was.
type simClock struct {
	mu       sync.Mutex
	idle     *sync.Cond
	t        time.Time
	busy     int // goroutines running, neither asleep nor finished
	sleepers []simSleeper
}

type simSleeper struct {
	at   time.Time
	wake chan struct{}
}

func newSimClock() *simClock {
	c := &simClock{t: time.Date(2026, 3, 1, 7, 0, 0, 0, time.UTC)}
	c.idle = sync.NewCond(&c.mu)
	return c
}

func (c *simClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	c.mu.Lock()
	s := simSleeper{at: c.t.Add(d), wake: make(chan struct{})}
	c.sleepers = append(c.sleepers, s)
	c.busy--
	c.idle.Broadcast()
	c.mu.Unlock()
	<-s.wake
	return nil
}

// run starts n goroutines running f(i) and returns when all are done.
func (c *simClock) run(n int, f func(i int)) {
	c.mu.Lock()
	c.busy = n
	c.mu.Unlock()
	for i := range n {
		go func() {
			defer func() {
				c.mu.Lock()
				c.busy--
				c.idle.Broadcast()
				c.mu.Unlock()
			}()
			f(i)
		}()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for c.busy > 0 {
			c.idle.Wait()
		}
		if len(c.sleepers) == 0 {
			return
		}
		slices.SortStableFunc(c.sleepers, func(a, b simSleeper) int { return a.at.Compare(b.at) })
		c.t = c.sleepers[0].at
		due := 0
		for due < len(c.sleepers) && !c.sleepers[due].at.After(c.t) {
			due++
		}
		c.busy += due
		for _, s := range c.sleepers[:due] {
			close(s.wake)
		}
		c.sleepers = slices.Delete(c.sleepers, 0, due)
	}
}

// simSES is SES at a fixed latency on a simClock: it records when
// each email arrived and refuses any that would put more than limit
// recipients in one second, as SES does with a 429.
type simSES struct {
	clock   *simClock
	latency time.Duration
	limit   int
	mu      sync.Mutex
	at      []time.Time
	refused int
}

func (s *simSES) Send(ctx context.Context, e worker.Email) (string, error) {
	if err := s.clock.sleep(ctx, s.latency/2); err != nil {
		return "", err
	}
	now := s.clock.now()
	s.mu.Lock()
	inSecond := 0
	for _, t := range s.at {
		if now.Sub(t) < time.Second {
			inSecond++
		}
	}
	if inSecond+len(e.To) > s.limit {
		s.refused++
		s.mu.Unlock()
		return "", throttleErr("Maximum sending rate exceeded.")
	}
	s.at = append(s.at, now)
	n := len(s.at)
	s.mu.Unlock()
	if err := s.clock.sleep(ctx, s.latency/2); err != nil {
		return "", err
	}
	return fmt.Sprintf("m-%d", n), nil
}

// rate returns the recipients a second from the first email's arrival
// to the last's, and the most that arrived in any one second.
func (s *simSES) rate() (perSecond float64, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := slices.Clone(s.at)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	for i := range at {
		j := i
		for j < len(at) && at[j].Sub(at[i]) < time.Second {
			j++
		}
		most = max(most, j-i)
	}
	return float64(len(at)-1) / at[len(at)-1].Sub(at[0]).Seconds(), most
}

// TestPacingHoldsTheRateUnderConcurrency: 16 deliveries in flight share
// each process's pacer, and SES answers in 20 ms. Whatever MaxSendRate
// the account reports, and whether one process sends or two replicas
// with pacing.replicas 2, the emails arrive at rate_fraction ×
// MaxSendRate within 10%, never more than MaxSendRate in one second
// (no 429), each once. Time is virtual (simClock), so the figures are
// the pacer's, not the machine's.
func TestPacingHoldsTheRateUnderConcurrency(t *testing.T) {
	const fraction, inFlight, latency = 0.8, 16, 20 * time.Millisecond
	for _, maxRate := range []float64{14, 100, 500} {
		for _, replicas := range []int{1, 2} {
			t.Run(fmt.Sprintf("MaxSendRate %g, %d replicas", maxRate, replicas), func(t *testing.T) {
				clock := newSimClock()
				ses := &simSES{clock: clock, latency: latency, limit: int(maxRate)}
				pacers := make([]*Paced, replicas)
				for i := range pacers {
					pacers[i] = &Paced{
						Mailer: ses, Account: account(maxRate, -1, 0), RateFraction: fraction, Replicas: replicas,
						Logger: slog.New(slog.DiscardHandler), now: clock.now, sleep: clock.sleep,
						jitter: func(d time.Duration) time.Duration { return d / 2 },
					}
				}
				n := int(6 * fraction * maxRate) // about six seconds of sending
				var mu sync.Mutex
				var errs []error
				next := 0
				clock.run(replicas*inFlight, func(g int) {
					p := pacers[g%replicas]
					for {
						mu.Lock()
						i := next
						next++
						mu.Unlock()
						if i >= n {
							return
						}
						if _, err := p.Send(context.Background(), to(fmt.Sprintf("r%d@example.com", i))); err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
						}
					}
				})
				if len(errs) > 0 {
					t.Fatalf("%d sends failed, first: %v", len(errs), errs[0])
				}
				got, most := ses.rate()
				want := fraction * maxRate
				t.Logf("%d emails at %.1f/s (target %.1f/s), at most %d in one second, %d refused", len(ses.at), got, want, most, ses.refused)
				if len(ses.at) != n {
					t.Errorf("%d emails accepted, want %d", len(ses.at), n)
				}
				if got < 0.9*want || got > 1.1*want {
					t.Errorf("rate %.2f/s is not within 10%% of %.2f/s", got, want)
				}
				if ses.refused > 0 || most > int(maxRate) {
					t.Errorf("%d sends refused, at most %d in one second; want none over MaxSendRate %g", ses.refused, most, maxRate)
				}
			})
		}
	}
}

// TestPacedReplicasShareTheDailyQuota: two replicas, each with
// pacing.replicas 2, see 100 of the 24-hour quota left; each stops
// after its 50, so that together they do not pass it between reads.
func TestPacedReplicasShareTheDailyQuota(t *testing.T) {
	for _, replicas := range []int{1, 2, 4} {
		t.Run(fmt.Sprint(replicas), func(t *testing.T) {
			b := setupPaced(account(1000, 1100, 1000))
			b.p.Replicas = replicas
			sent := 0
			for range 200 {
				_, err := b.p.Send(context.Background(), to("a@example.com"))
				if err != nil {
					if !worker.IsHalt(err) {
						t.Fatal(err)
					}
					break
				}
				sent++
			}
			if want := 100 / replicas; sent != want {
				t.Errorf("sent %d before halting, want %d: 1/%d of the 100 left", sent, want, replicas)
			}
		})
	}
}

// TestPacedReplicasStayWithinTheDailyQuotaWhenReadsInterleave: replica
// B reads 100 left and sends one; replica A reads 99 left and spends
// its half, 49, then reads again once its read is stale and sees 50
// left, while B still holds its half of the 100. Taking half of the 50
// as well would put the two 24 past the quota; A keeps to its share of
// the quota over its own sends of the last day instead.
func TestPacedReplicasStayWithinTheDailyQuotaWhenReadsInterleave(t *testing.T) {
	acct := account(1000, 100, 0)
	a, b := setupPaced(acct), setupPaced(acct)
	a.p.Replicas, b.p.Replicas = 2, 2
	ctx := context.Background()
	total := 0
	// sendUntilHalt sends from r until it halts, counting each email
	// the account accepted into its 24-hour count, as SES does.
	sendUntilHalt := func(r *paceBundle, most int) (sent int) {
		t.Helper()
		for range most {
			if _, err := r.p.Send(ctx, to("a@example.com")); err != nil {
				if !worker.IsHalt(err) {
					t.Fatal(err)
				}
				return sent
			}
			sent++
			total++
			acct.set(func(o *sesv2.GetAccountOutput) { o.SendQuota.SentLast24Hours++ })
		}
		return sent
	}
	if got := sendUntilHalt(b, 1); got != 1 {
		t.Fatalf("B sent %d, want 1", got)
	}
	if got := sendUntilHalt(a, 200); got != 49 {
		t.Errorf("A sent %d before halting, want 49, half of the 99 left", got)
	}
	a.clock.advance(time.Minute) // A's read is stale: it reads again
	if got := sendUntilHalt(a, 200); got != 1 {
		t.Errorf("A sent %d more after reading 50 left; want 1, the rest of its 50, while B holds its share", got)
	}
	sendUntilHalt(b, 200)
	if total > 100 {
		t.Errorf("A and B sent %d together; the 24-hour quota is 100", total)
	}
	if total != 100 {
		t.Errorf("A and B sent %d together, want the whole 100", total)
	}
	// A day on, SES no longer counts them, and neither does A.
	acct.set(func(o *sesv2.GetAccountOutput) { o.SendQuota.SentLast24Hours = 0 })
	a.clock.advance(25 * time.Hour)
	if got := sendUntilHalt(a, 200); got != 50 {
		t.Errorf("a day later A sent %d, want its share again, 50", got)
	}
}
