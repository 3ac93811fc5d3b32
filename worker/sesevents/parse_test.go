package sesevents_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/worker/sesevents"
)

const (
	sampleEmailID   = "6b1f0c3e9d2a4f5b8c7d6e5f4a3b2c1d"
	sampleMessageID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
)

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseSamples reads every documented form of every event type, as
// AWS delivers it to a queue.
func TestParseSamples(t *testing.T) {
	tests := []struct {
		file     string
		typ      string
		envelope string
		proves   sesevents.Proof
	}{
		{"raw-send.json", "Send", "raw", sesevents.Accepted},
		{"raw-delivery.json", "Delivery", "raw", sesevents.Accepted},
		{"raw-bounce.json", "Bounce", "raw", sesevents.Accepted},
		{"raw-complaint.json", "Complaint", "raw", sesevents.Accepted},
		{"raw-delivery-delay.json", "DeliveryDelay", "raw", sesevents.Accepted},
		{"raw-open.json", "Open", "raw", sesevents.Accepted},
		{"raw-click.json", "Click", "raw", sesevents.Accepted},
		{"raw-reject.json", "Reject", "raw", sesevents.NotSent},
		{"raw-rendering-failure.json", "Rendering Failure", "raw", sesevents.NotSent},
		{"sns-send.json", "Send", "sns", sesevents.Accepted},
		{"sns-delivery.json", "Delivery", "sns", sesevents.Accepted},
		{"sns-reject.json", "Reject", "sns", sesevents.NotSent},
		{"eventbridge-send.json", "Send", "eventbridge", sesevents.Accepted},
		{"eventbridge-delivery.json", "Delivery", "eventbridge", sesevents.Accepted},
		{"eventbridge-bounce.json", "Bounce", "eventbridge", sesevents.Accepted},
		{"eventbridge-rendering-failure.json", "Rendering Failure", "eventbridge", sesevents.NotSent},
		{"sns-eventbridge-send.json", "Send", "sns/eventbridge", sesevents.Accepted},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ev, err := sesevents.Parse(readSample(t, tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := sesevents.Event{Type: tt.typ, EmailID: sampleEmailID, MessageID: sampleMessageID, Envelope: tt.envelope}
			if ev != want {
				t.Errorf("Parse =\n  %+v\nwant\n  %+v", ev, want)
			}
			if got := ev.Proves(); got != tt.proves {
				t.Errorf("Proves() = %v, want %v", got, tt.proves)
			}
		})
	}
}

// TestParseUnrelated: what is not about an email of ours is recognised
// as such, so the reader deletes it rather than keeping it.
func TestParseUnrelated(t *testing.T) {
	send := readSample(t, "raw-send.json")
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"SES event without our tag", readSample(t, "raw-send-untagged.json"), sesevents.ErrUnrelated},
		{"SES event without tags", edit(t, send, func(m map[string]any) { delete(m["mail"].(map[string]any), "tags") }), sesevents.ErrUnrelated},
		{"another service's EventBridge event", readSample(t, "eventbridge-scheduled.json"), sesevents.ErrUnrelated},
		{"SES EventBridge event about no email", []byte(`{"version":"0","id":"1","detail-type":"Sending Status Disabled","source":"aws.ses","detail":{}}`), sesevents.ErrUnrelated},
		{"identity feedback notification", []byte(`{"notificationType":"Delivery","mail":{"messageId":"m-1","destination":["a@example.com"]},"delivery":{}}`), sesevents.ErrUnrelated},
		{"S3 test event", []byte(`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-26T09:00:00.000Z","Bucket":"acme-reports"}`), sesevents.ErrUnrelated},
		{"a report-ready event on the wrong queue", []byte(`{"version":1,"type":"report.ready","id":"evt-1"}`), sesevents.ErrUnrelated},
		{"SNS notification of another document", snsOf(`{"Records":[]}`), sesevents.ErrUnrelated},
		{"SNS subscription confirmation", readSample(t, "sns-subscription-confirmation.json"), sesevents.ErrSubscriptionConfirmation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sesevents.Parse(tt.body)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
			var fe *sesevents.FieldError
			if errors.As(err, &fe) {
				t.Errorf("unrelated message reported as unreadable: %v", err)
			}
		})
	}
}

// TestParseMalformed: a body that cannot be read, or an event of ours
// that lacks what settling needs, is a FieldError naming the field.
func TestParseMalformed(t *testing.T) {
	send := readSample(t, "raw-send.json")
	eb := readSample(t, "eventbridge-send.json")
	tests := []struct {
		name  string
		body  []byte
		field string // the FieldError's Field
		in    string // in its message
	}{
		{"empty", []byte("  "), "body", "is empty"},
		{"not JSON", []byte("Send event for 6b1f0c3e"), "body", "is not JSON"},
		{"not an object", []byte(`["eventType"]`), "body", "is not a JSON object"},
		{"null", []byte(`null`), "body", "is not a JSON object"},
		{"not UTF-8", []byte("{\"eventType\":\"Send\xff\"}"), "body", "is not valid UTF-8"},
		{"no messageId", edit(t, send, func(m map[string]any) { delete(m["mail"].(map[string]any), "messageId") }), "mail.messageId", "is required"},
		{"messageId with a space", edit(t, send, func(m map[string]any) { m["mail"].(map[string]any)["messageId"] = "a b" }), "mail.messageId", "is not an SES message id"},
		{"no mail", edit(t, send, func(m map[string]any) { delete(m, "mail") }), "mail", "is required"},
		{"mail not an object", edit(t, send, func(m map[string]any) { m["mail"] = "x" }), "mail", "is not a JSON object"},
		{"eventType null", edit(t, send, func(m map[string]any) { m["eventType"] = nil }), "eventType", "is required"},
		{"eventType a number", edit(t, send, func(m map[string]any) { m["eventType"] = 1 }), "eventType", "is not a string"},
		{"two email ids", setTag(t, send, []any{"a1", "b2"}), "mail.tags.reportmailer-email", "more than one value"},
		{"no email id", setTag(t, send, []any{}), "mail.tags.reportmailer-email", "is empty"},
		{"email id not a list", setTag(t, send, "a1"), "mail.tags.reportmailer-email", "is not a list of strings"},
		{"email id SES would not write", setTag(t, send, []any{"../../x"}), "mail.tags.reportmailer-email", "is not a tag value SES writes"},
		{"SNS Message empty", snsOf(""), "Message", "is required"},
		{"SNS Message not JSON", snsOf("{"), "Message", "is not JSON"},
		{"SNS type unknown", []byte(`{"Type":"Alert","MessageId":"1","Message":"{}"}`), "Type", "is not an SNS message type"},
		{"SNS in SNS", snsOf(string(snsOf(string(send)))), "Message", "inside another envelope"},
		{"EventBridge without detail", edit(t, eb, func(m map[string]any) { delete(m, "detail") }), "detail", "is required"},
		{"EventBridge type disagrees", edit(t, eb, func(m map[string]any) { m["detail-type"] = "Email Delivered" }), "detail.eventType", "disagrees with detail-type"},
		{"EventBridge message id missing", edit(t, eb, func(m map[string]any) {
			delete(m["detail"].(map[string]any)["mail"].(map[string]any), "messageId")
		}), "detail.mail.messageId", "is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sesevents.Parse(tt.body)
			var fe *sesevents.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse error = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field || !strings.Contains(err.Error(), tt.in) {
				t.Errorf("error %q: want field %q and %q in it", err, tt.field, tt.in)
			}
			if errors.Is(err, sesevents.ErrUnrelated) {
				t.Error("an unreadable message is reported as unrelated, so it would be deleted")
			}
		})
	}
}

// TestParseEventBridgeTypeFromDetailType: the detail's eventType is
// what SES writes, but the detail-type alone names the event too.
func TestParseEventBridgeTypeFromDetailType(t *testing.T) {
	eb := edit(t, readSample(t, "eventbridge-rendering-failure.json"), func(m map[string]any) {
		delete(m["detail"].(map[string]any), "eventType")
	})
	ev, err := sesevents.Parse(eb)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "Rendering Failure" || ev.Proves() != sesevents.NotSent {
		t.Errorf("Parse = %+v (proves %v), want a Rendering Failure that proves NotSent", ev, ev.Proves())
	}
}

func TestParseRenderingFailureSpellings(t *testing.T) {
	for _, typ := range []string{"Rendering Failure", "RenderingFailure"} {
		body := edit(t, readSample(t, "raw-rendering-failure.json"), func(m map[string]any) { m["eventType"] = typ })
		ev, err := sesevents.Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Proves() != sesevents.NotSent {
			t.Errorf("%q proves %v, want NotSent", typ, ev.Proves())
		}
	}
}

func TestParseUnknownTypeProvesNothing(t *testing.T) {
	body := edit(t, readSample(t, "raw-send.json"), func(m map[string]any) { m["eventType"] = "Teleport" })
	ev, err := sesevents.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Proves() != sesevents.Unknown {
		t.Errorf("an unknown event type proves %v, want Unknown", ev.Proves())
	}
}

// TestParseRejectsCaseVariants: keys match exactly, so "type" (a native
// report event's key) is not SNS's "Type", and "EventType" is not an
// SES record.
func TestParseRejectsCaseVariants(t *testing.T) {
	for _, body := range []string{
		`{"type":"Notification","messageId":"1","message":"{}"}`,
		`{"EventType":"Send","Mail":{"MessageId":"m","Tags":{"reportmailer-email":["a"]}}}`,
	} {
		if _, err := sesevents.Parse([]byte(body)); !errors.Is(err, sesevents.ErrUnrelated) {
			t.Errorf("Parse(%s) = %v, want unrelated", body, err)
		}
	}
}

func TestFieldErrorQuotesShortly(t *testing.T) {
	long := strings.Repeat("é", 200)
	_, err := sesevents.Parse([]byte(long))
	if err == nil || len(err.Error()) > 200 || !strings.Contains(err.Error(), "(400 bytes)") {
		t.Errorf("error %q: want the value cut short, with its length", err)
	}
}

// edit returns body with fn applied to it as a JSON object.
func edit(t testing.TB, body []byte, fn func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func setTag(t testing.TB, body []byte, v any) []byte {
	return edit(t, body, func(m map[string]any) {
		m["mail"].(map[string]any)["tags"].(map[string]any)[sesevents.Tag] = v
	})
}

// snsOf wraps msg in an SNS notification.
func snsOf(msg string) []byte {
	b, _ := json.Marshal(map[string]string{
		"Type": "Notification", "MessageId": "d1bd6c5e", "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
		"Message": msg, "Timestamp": "2026-11-26T09:30:00.456Z",
	})
	return b
}
