package main

import (
	"context"
	"fmt"
	"strings"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker/store"
	"github.com/reportmailer/reportmailer/worker/transport"
)

// ledger runs "ledger settle": an operator's answer to a delivery the
// worker dead-lettered as maybe sent, whose reason names the record.
func (m *Main) ledger(ctx context.Context, args []string) error {
	fs := m.newFlagSet("ledger settle", "ledger settle -config FILE -record KEY -sent|-unsent [-force]")
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	record := fs.String("record", "", "the delivery's ledger record, as a dead letter's reason names it: the key, or s3://BUCKET/PREFIX/KEY")
	sent := fs.Bool("sent", false, "the email arrived: mark the record sent, so a redrive skips it")
	unsent := fs.Bool("unsent", false, "the email did not arrive: delete the record, so a redrive sends it")
	force := fs.Bool("force", false, "settle a record that is not \"sending\" too: -unsent on a sent one makes a redrive send it again; -sent on a claimed or released one means it is never sent")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *sent == *unsent {
		return usageError("ledger settle: give exactly one of -sent and -unsent")
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	key, err := deliveryKey(*record, c.Ledger.Bucket, c.Ledger.Prefix)
	if err != nil {
		return usageError("ledger settle: -record %q: %v", *record, err)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("aws config: %w", err)
	}
	awsCfg.HTTPClient = transport.Wrap(awsCfg.HTTPClient)
	if awsCfg.Region == "" {
		return fmt.Errorf("aws config: no region: set AWS_REGION")
	}
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = c.S3.UsePathStyle })
	l := &store.Ledger{Client: s3c, Bucket: c.Ledger.Bucket, Prefix: c.Ledger.Prefix}
	st, err := l.SettleRecord(ctx, key, *sent, *force)
	if err != nil {
		return err
	}
	was := "no record"
	if st.Was != "" {
		was = fmt.Sprintf("it was %q", st.Was)
		if st.EmailID != "" {
			was += " (email " + st.EmailID + ")"
		}
		if st.SettledBy != "" {
			was += ", settled by " + st.SettledBy
		}
	}
	switch {
	case *sent:
		fmt.Fprintf(m.Stdout, "ledger record %s: marked sent; %s. A redrive of its message skips the delivery.\n", st.Record, was)
	default:
		fmt.Fprintf(m.Stdout, "ledger record %s: deleted; %s. A redrive of its message sends the email.\n", st.Record, was)
	}
	return nil
}

// deliveryKey reads a record as an operator may paste it: the bare
// delivery key, the object key under prefix, or its s3:// URL.
func deliveryKey(record, bucket, prefix string) (string, error) {
	k := record
	if rest, ok := strings.CutPrefix(k, "s3://"); ok {
		b, key, _ := strings.Cut(rest, "/")
		if b != bucket {
			return "", fmt.Errorf("is in bucket %q, not the ledger's (%q)", b, bucket)
		}
		k = key
	}
	k = strings.TrimPrefix(k, prefix)
	if len(k) != 64 || strings.Trim(k, "0123456789abcdef") != "" {
		return "", fmt.Errorf("is not a delivery key (64 hex digits) under the ledger prefix %q", prefix)
	}
	return k, nil
}
