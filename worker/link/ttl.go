package link

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Reasons a link expires sooner than its TTL asks for, as logged. Each
// is logged once per signer (once per report type for capReasonMaxTTL).
const (
	capReasonMaxTTL      = "the ttl exceeds the maximum link lifetime (max ttl)"
	capReason2038        = "the expiry would pass 2038-01-19T03:14:07Z, where CloudFront's 32-bit epoch seconds end"
	capReasonS3Max       = "the ttl exceeds the 7-day limit of S3 presigned URLs"
	capReasonCredentials = "the credentials expire before the ttl ends"
	capReasonSigningCred = "the client signed with credentials that expire sooner than Credentials reported"
)

// ttlFor returns the lifetime asked for a report of type typ (byType's
// entry, or def), and that lifetime capped at max when max > 0.
func ttlFor(def time.Duration, byType map[string]time.Duration, max time.Duration, typ string) (want, ttl time.Duration) {
	want = def
	if d, ok := byType[typ]; ok && typ != "" {
		want = d
	}
	ttl = want
	if max > 0 && ttl > max {
		ttl = max
	}
	return want, ttl
}

// checkTTLs validates a signer's lifetimes.
func checkTTLs(def time.Duration, byType map[string]time.Duration, max time.Duration) error {
	if def < time.Second {
		return fmt.Errorf("ttl %v is too short, want at least 1s", def)
	}
	for typ, d := range byType {
		if d < time.Second {
			return fmt.Errorf("ttl %v for report type %q is too short, want at least 1s", d, typ)
		}
	}
	if max < 0 {
		return fmt.Errorf("max ttl %v is negative", max)
	}
	return nil
}

// warner logs each capped-expiry warning once.
type warner struct {
	seen sync.Map // dedup key → struct{}
}

// warn logs that links of report type typ, which asked to live want,
// live only got, because of reason. dedup says what must differ for
// the warning to be logged again.
func (w *warner) warn(log *slog.Logger, dedup, reason, typ string, want, got time.Duration, attrs ...slog.Attr) {
	if _, loaded := w.seen.LoadOrStore(dedup, struct{}{}); loaded {
		return
	}
	if log == nil {
		log = slog.Default()
	}
	all := []slog.Attr{
		slog.String("reason", reason),
		slog.Duration("ttl", want),
		slog.Duration("capped_to", got.Truncate(time.Second)),
	}
	if typ != "" {
		all = append(all, slog.String("report_type", typ))
	}
	all = append(all, attrs...)
	log.LogAttrs(context.Background(), slog.LevelWarn, "links expire sooner than the configured ttl; the email shows the true expiry; logged once", all...)
}
