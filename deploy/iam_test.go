package deploy_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/dynblock"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	"github.com/zclconf/go-cty/cty/gocty"

	"github.com/reportmailer/reportmailer/worker/iam"
)

// The account the Terraform policy is evaluated for: the attributes the
// AWS provider would give each resource the policy names.
const (
	tfAccount = "123456789012"
	tfRegion  = "eu-west-2"
	tfName    = "acme-reportmailer"
	tfDistID  = "E2EXAMPLE0DIST"
	tfSender  = "Reports@Example.com"
)

func tfQueueURL(name string) string {
	return "https://sqs." + tfRegion + ".amazonaws.com/" + tfAccount + "/" + name
}

func tfQueueARN(name string) string { return "arn:aws:sqs:" + tfRegion + ":" + tfAccount + ":" + name }

// TestTerraformIAMPolicy evaluates the Terraform module's policies for
// one account and compares each, statement by statement (actions,
// resources, conditions), with the policy the code declares (worker/iam):
// the worker's role for drain, serve, keys and check -aws, and
// operator_policy_json for dlq list, redrive, resend, history, status,
// keys rotate and keys retire, with downloads when the distribution logs
// and revoke with link_revocation.
func TestTerraformIAMPolicy(t *testing.T) {
	m := loadModule(t, tfDir)
	tests := []struct {
		reportsPrefix, sesEvents string
		// logs: cloudfront_log_bucket_name is set; revocation:
		// link_revocation; kms: kms_signing.
		logs, revocation, kms bool
	}{
		{"reports/", "eventbridge", true, true, true},
		{"", "none", false, false, false},
	}
	for _, tt := range tests {
		reportsPrefix := tt.reportsPrefix
		t.Run(fmt.Sprintf("reports_prefix=%s,ses_event_destination=%s,logs=%v,link_revocation=%v,kms_signing=%v", reportsPrefix, tt.sesEvents, tt.logs, tt.revocation, tt.kms), func(t *testing.T) {
			ledger := m.value(t, "ledger_prefix", cty.NilVal).AsString()
			keys := m.value(t, "key_records_prefix", cty.NilVal).AsString()
			schedules := []string{"on-demand", "daily"}

			in := iam.Inputs{
				Region:           tfRegion,
				Account:          tfAccount,
				ReportsBucket:    "acme-reports",
				ReportsPrefix:    reportsPrefix,
				StateBucket:      "acme-state",
				LedgerPrefix:     ledger,
				KeyRecordsPrefix: keys,
				From:             "Reports <" + tfSender + ">",
				ConfigurationSet: tfName,
				CloudFront:       true,
				DistributionID:   tfDistID,
				KMS:              tt.kms,
			}
			for _, s := range schedules {
				in.Queues = append(in.Queues, iam.QueuePair{URL: tfQueueURL(tfName + "-" + s), DeadLetterURL: tfQueueURL(tfName + "-" + s + "-dlq")})
			}
			// Terraform's count: a list of one queue, or none.
			sesEvents := cty.ListValEmpty(cty.Object(map[string]cty.Type{"arn": cty.String}))
			if tt.sesEvents != "none" {
				in.EventsQueueURL = tfQueueURL(tfName + "-ses-events")
				sesEvents = cty.ListVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"arn": cty.StringVal(tfQueueARN(tfName + "-ses-events"))})})
			}
			source, dlq := map[string]cty.Value{}, map[string]cty.Value{}
			for _, s := range schedules {
				source[s] = cty.ObjectVal(map[string]cty.Value{"arn": cty.StringVal(tfQueueARN(tfName + "-" + s))})
				dlq[s] = cty.ObjectVal(map[string]cty.Value{"arn": cty.StringVal(tfQueueARN(tfName + "-" + s + "-dlq"))})
			}
			arn := func(a string) cty.Value { return cty.ObjectVal(map[string]cty.Value{"arn": cty.StringVal(a)}) }
			// Resources with a count: a list of one, or none.
			counted := func(on bool, a string) cty.Value {
				if !on {
					return cty.ListValEmpty(cty.Object(map[string]cty.Type{"arn": cty.String}))
				}
				return cty.ListVal([]cty.Value{arn(a)})
			}
			if tt.logs {
				in.AccessLogsBucket, in.AccessLogsPrefix = "acme-logs", "cloudfront/"
			}
			if tt.revocation {
				in.KeyValueStoreARN = "arn:aws:cloudfront::" + tfAccount + ":key-value-store/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
			}
			ctx := &hcl.EvalContext{
				Variables: map[string]cty.Value{
					"var": cty.ObjectVal(map[string]cty.Value{
						"name":               cty.StringVal(tfName),
						"reports_prefix":     cty.StringVal(reportsPrefix),
						"ledger_prefix":      cty.StringVal(ledger),
						"key_records_prefix": cty.StringVal(keys),
						"sender_address":     cty.StringVal(tfSender),
						"kms_signing":        cty.BoolVal(tt.kms),
					}),
					"data": cty.ObjectVal(map[string]cty.Value{
						"aws_caller_identity": cty.ObjectVal(map[string]cty.Value{"current": cty.ObjectVal(map[string]cty.Value{"account_id": cty.StringVal(tfAccount)})}),
						"aws_region":          cty.ObjectVal(map[string]cty.Value{"current": cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal(tfRegion)})}),
						"aws_partition":       cty.ObjectVal(map[string]cty.Value{"current": cty.ObjectVal(map[string]cty.Value{"partition": cty.StringVal("aws")})}),
					}),
					"aws_s3_bucket": cty.ObjectVal(map[string]cty.Value{
						"reports": arn("arn:aws:s3:::" + in.ReportsBucket),
						"state":   arn("arn:aws:s3:::" + in.StateBucket),
						"logs":    counted(tt.logs, "arn:aws:s3:::"+in.AccessLogsBucket),
					}),
					"aws_cloudfront_key_value_store": cty.ObjectVal(map[string]cty.Value{"revoked": counted(tt.revocation, in.KeyValueStoreARN)}),
					"aws_sqs_queue":                  cty.ObjectVal(map[string]cty.Value{"source": cty.MapVal(source), "dead_letter": cty.MapVal(dlq), "ses_events": sesEvents}),
					"aws_sesv2_configuration_set":    cty.ObjectVal(map[string]cty.Value{"this": arn(iam.SESARN(tfRegion, tfAccount, "configuration-set/"+tfName))}),
					"aws_cloudfront_distribution":    cty.ObjectVal(map[string]cty.Value{"reports": arn("arn:aws:cloudfront::" + tfAccount + ":distribution/" + tfDistID)}),
				},
				Functions: map[string]function.Function{"lower": stdlib.LowerFunc, "split": stdlib.SplitFunc, "startswith": tfFunctions["startswith"]},
			}
			ctx.Variables["local"] = m.evalLocals(t, ctx)

			for _, p := range tfPolicies(tt.logs, tt.revocation) {
				if err := in.Check(p.cmds...); err != nil {
					t.Fatal(err)
				}
				want := normalize(iam.For(in, p.cmds...).Statement)
				doc := m.data["aws_iam_policy_document."+p.doc]
				if doc == nil {
					t.Fatalf("no data \"aws_iam_policy_document\" %q", p.doc)
				}
				if _, ok := m.outputs[p.output]; p.output != "" && !ok {
					t.Errorf("no output %q for the %s policy", p.output, p.doc)
				}
				got := normalize(policyStatements(t, doc, ctx))

				// Statement by statement, so a failure names what differs.
				bySid := func(sts []iam.Statement) map[string]string {
					m := map[string]string{}
					for _, st := range sts {
						b, _ := json.Marshal(st)
						m[st.Sid] = string(b)
					}
					return m
				}
				g, w := bySid(got), bySid(want)
				for _, sid := range sortedCopy(slices.Concat(slices.Collect(maps.Keys(g)), slices.Collect(maps.Keys(w)))) {
					if g[sid] != w[sid] {
						t.Errorf("deploy/terraform's %s policy: statement %q differs from the declaration (worker/iam, %v)\nterraform: %s\ndeclared:  %s", p.doc, sid, p.cmds, g[sid], w[sid])
					}
				}
			}
		})
	}
}

// tfPolicy is one of the module's policy documents and the commands it
// must allow, exactly.
type tfPolicy struct {
	doc    string // data "aws_iam_policy_document" name
	output string // the output that hands it out, "" for the worker's role
	cmds   []iam.Command
}

// tfPolicies are the module's policies, with the access logs bucket
// (logs) and link revocation on or off: the operator's policy allows
// downloads and revoke only with what they read and write.
func tfPolicies(logs, revocation bool) []tfPolicy {
	operator := []iam.Command{iam.DLQList, iam.DLQDelete, iam.Redrive, iam.Resend, iam.History, iam.Status, iam.KeysRotate, iam.KeysRetire}
	if logs {
		operator = append(operator, iam.Downloads)
	}
	if revocation {
		operator = append(operator, iam.Revoke)
	}
	return []tfPolicy{
		{"worker", "", []iam.Command{iam.Drain, iam.Serve, iam.Keys, iam.Check}},
		{"operator", "operator_policy_json", operator},
	}
}

// evalLocals evaluates the module's locals that ctx can evaluate,
// repeating until no more can be: locals may read other locals.
func (m *tfModule) evalLocals(t *testing.T, ctx *hcl.EvalContext) cty.Value {
	t.Helper()
	done := map[string]cty.Value{}
	for progress := true; progress; {
		progress = false
		ctx.Variables["local"] = cty.ObjectVal(done)
		for name, a := range m.locals {
			if _, ok := done[name]; ok {
				continue
			}
			if v, diags := a.Expr.Value(ctx); !diags.HasErrors() && v.IsWhollyKnown() {
				done[name] = v
				progress = true
			}
		}
	}
	return cty.ObjectVal(done)
}

// policyStatements expands an aws_iam_policy_document's dynamic blocks and
// returns its statements as IAM statements.
func policyStatements(t *testing.T, doc *hclsyntax.Block, ctx *hcl.EvalContext) []iam.Statement {
	t.Helper()
	body := dynblock.Expand(doc.Body, ctx)
	content, diags := body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "statement"}}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	var out []iam.Statement
	for _, sb := range content.Blocks {
		sc, diags := sb.Body.Content(&hcl.BodySchema{
			Attributes: []hcl.AttributeSchema{{Name: "sid"}, {Name: "effect"}, {Name: "actions"}, {Name: "resources"}},
			Blocks:     []hcl.BlockHeaderSchema{{Type: "condition"}, {Type: "principals"}},
		})
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		str := func(name string) string {
			a, ok := sc.Attributes[name]
			if !ok {
				return ""
			}
			var s string
			if err := gocty.FromCtyValue(evalAttr(t, a, ctx), &s); err != nil {
				t.Fatalf("%s: %v", a.Range, err)
			}
			return s
		}
		list := func(a *hcl.Attribute) []string {
			var s []string
			if a == nil {
				return nil
			}
			v, err := convert.Convert(evalAttr(t, a, ctx), cty.List(cty.String))
			if err == nil {
				err = gocty.FromCtyValue(v, &s)
			}
			if err != nil {
				t.Fatalf("%s: %v", a.Range, err)
			}
			return s
		}
		st := iam.Statement{Sid: str("sid"), Effect: str("effect"), Action: list(sc.Attributes["actions"]), Resource: list(sc.Attributes["resources"])}
		if st.Effect == "" {
			st.Effect = "Allow"
		}
		if len(sc.Blocks.OfType("principals")) > 0 {
			t.Errorf("%s: statement %s names principals; an identity policy has none", sb.DefRange, st.Sid)
		}
		for _, cb := range sc.Blocks.OfType("condition") {
			// Content, not JustAttributes: only Content binds a dynamic
			// block's iterator.
			cc, diags := cb.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
				{Name: "test", Required: true}, {Name: "variable", Required: true}, {Name: "values", Required: true},
			}})
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			attrs := cc.Attributes
			var test, variable string
			_ = gocty.FromCtyValue(evalAttr(t, attrs["test"], ctx), &test)
			_ = gocty.FromCtyValue(evalAttr(t, attrs["variable"], ctx), &variable)
			if st.Condition == nil {
				st.Condition = map[string]map[string][]string{}
			}
			if st.Condition[test] == nil {
				st.Condition[test] = map[string][]string{}
			}
			st.Condition[test][variable] = append(st.Condition[test][variable], list(attrs["values"])...)
		}
		out = append(out, st)
	}
	return out
}

func evalAttr(t *testing.T, a *hcl.Attribute, ctx *hcl.EvalContext) cty.Value {
	t.Helper()
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s", diags.Error())
	}
	return v
}

// normalize sorts statements by Sid and their lists, as iam.For does,
// so two equal policies print the same.
func normalize(sts []iam.Statement) []iam.Statement {
	out := slices.Clone(sts)
	for i := range out {
		out[i].Action = sortedCopy(out[i].Action)
		out[i].Resource = sortedCopy(out[i].Resource)
		for _, op := range out[i].Condition {
			for _, k := range slices.Collect(maps.Keys(op)) {
				op[k] = sortedCopy(op[k])
			}
		}
	}
	slices.SortFunc(out, func(a, b iam.Statement) int { return strings.Compare(a.Sid, b.Sid) })
	return out
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
