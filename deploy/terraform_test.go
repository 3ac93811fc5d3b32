// Package deploy_test checks the deployment files under deploy/ against
// the code they deploy: the Terraform module (parsed with HCL, as
// Terraform itself reads it, since no provider can be installed here),
// the kustomize overlays (rendered with kustomize's Go API and decoded
// strictly into the Kubernetes types), the image and the systemd unit.
package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	"go.yaml.in/yaml/v3"

	"github.com/reportmailer/reportmailer/config"
)

const tfDir = "terraform"

// tfModule is one directory of .tf files, as Terraform sees a module.
type tfModule struct {
	dir       string
	src       map[string][]byte // file name -> bytes, for expression text
	variables map[string]*hclsyntax.Block
	outputs   map[string]*hclsyntax.Block
	locals    map[string]*hclsyntax.Attribute
	resources map[string]*hclsyntax.Block // "TYPE.NAME"
	data      map[string]*hclsyntax.Block // "TYPE.NAME"
	modules   map[string]*hclsyntax.Block
}

func loadModule(t *testing.T, dir string) *tfModule {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s (%v)", dir, err)
	}
	m := &tfModule{dir: dir, src: map[string][]byte{}, variables: map[string]*hclsyntax.Block{}, outputs: map[string]*hclsyntax.Block{},
		locals: map[string]*hclsyntax.Attribute{}, resources: map[string]*hclsyntax.Block{}, data: map[string]*hclsyntax.Block{}, modules: map[string]*hclsyntax.Block{}}
	p := hclparse.NewParser()
	for _, name := range files {
		f, diags := p.ParseHCLFile(name)
		if diags.HasErrors() {
			t.Fatalf("%s", diags.Error())
		}
		m.src[name] = f.Bytes
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			add := func(into map[string]*hclsyntax.Block, key string) {
				if _, dup := into[key]; dup {
					t.Errorf("%s: %s %q declared twice", b.DefRange().Filename, b.Type, key)
				}
				into[key] = b
			}
			switch b.Type {
			case "variable":
				add(m.variables, b.Labels[0])
			case "output":
				add(m.outputs, b.Labels[0])
			case "resource":
				add(m.resources, b.Labels[0]+"."+b.Labels[1])
			case "data":
				add(m.data, b.Labels[0]+"."+b.Labels[1])
			case "module":
				add(m.modules, b.Labels[0])
			case "locals":
				for name, a := range b.Body.Attributes {
					if _, dup := m.locals[name]; dup {
						t.Errorf("%s: local %q declared twice", a.SrcRange.Filename, name)
					}
					m.locals[name] = a
				}
			}
		}
	}
	return m
}

// text returns an expression's source text.
func (m *tfModule) text(e hclsyntax.Expression) string { return m.rangeText(e.Range()) }

// rangeText returns the source text of r, such as a block's body.
func (m *tfModule) rangeText(r hcl.Range) string { return string(r.SliceBytes(m.src[r.Filename])) }

// literal evaluates an expression that needs no variables or functions.
func literal(t *testing.T, e hcl.Expression) cty.Value {
	t.Helper()
	v, diags := e.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s: not a literal: %s", e.Range(), diags.Error())
	}
	return v
}

func TestTerraformFilesParse(t *testing.T) {
	n := 0
	err := filepath.WalkDir(tfDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".tf") {
			return err
		}
		n++
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if _, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos); diags.HasErrors() {
			t.Errorf("%s", diags.Error())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Errorf("found %d .tf files under %s", n, tfDir)
	}
}

// The variables a caller must set; everything else has a default.
var wantRequired = []string{"cloudfront_public_keys", "name", "reports_bucket_name", "schedules", "sender_address", "state_bucket_name"}

func TestTerraformVariables(t *testing.T) {
	m := loadModule(t, tfDir)
	var required []string
	for name, b := range m.variables {
		attrs := b.Body.Attributes
		if d, ok := attrs["description"]; !ok || strings.TrimSpace(literal(t, d.Expr).AsString()) == "" {
			t.Errorf("variable %q has no description", name)
		}
		if _, ok := attrs["type"]; !ok {
			t.Errorf("variable %q has no type", name)
		}
		if _, ok := attrs["default"]; !ok {
			required = append(required, name)
		}
		for _, v := range b.Body.Blocks {
			if v.Type != "validation" {
				continue
			}
			if _, ok := v.Body.Attributes["error_message"]; !ok {
				t.Errorf("variable %q: a validation has no error_message", name)
			}
			// Before Terraform 1.9 a validation may read only its own
			// variable; required_version allows 1.5.
			for _, tr := range v.Body.Attributes["condition"].Expr.Variables() {
				if tr.RootName() == "var" && tr[1].(hcl.TraverseAttr).Name != name {
					t.Errorf("variable %q: validation reads var.%s", name, tr[1].(hcl.TraverseAttr).Name)
				}
			}
		}
	}
	sort.Strings(required)
	if !slices.Equal(required, wantRequired) {
		t.Errorf("required variables (no default) are %v, want %v", required, wantRequired)
	}
}

// tfFunctions are the Terraform functions the module's validations call,
// from go-cty's standard library where it has them.
var tfFunctions = map[string]function.Function{
	"can":       tryfunc.CanFunc,
	"regex":     stdlib.RegexFunc,
	"length":    stdlib.LengthFunc,
	"values":    stdlib.ValuesFunc,
	"keys":      stdlib.KeysFunc,
	"contains":  stdlib.ContainsFunc,
	"trimspace": stdlib.TrimSpaceFunc,
	"alltrue": function.New(&function.Spec{
		Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			for it := args[0].ElementIterator(); it.Next(); {
				if _, v := it.Element(); v.False() {
					return cty.False, nil
				}
			}
			return cty.True, nil
		},
	}),
	"startswith": function.New(&function.Spec{
		Params: []function.Parameter{{Name: "s", Type: cty.String}, {Name: "prefix", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(strings.HasPrefix(args[0].AsString(), args[1].AsString())), nil
		},
	}),
}

// validate converts v to the variable's type, filling optional
// attributes' defaults as Terraform does, and evaluates each of its
// validations. It returns the error messages of those that fail.
func (m *tfModule) validate(t *testing.T, name string, v cty.Value) []string {
	t.Helper()
	b := m.variables[name]
	ty, defaults, diags := typeexpr.TypeConstraintWithDefaults(b.Body.Attributes["type"].Expr)
	if diags.HasErrors() {
		t.Fatalf("variable %q: type: %s", name, diags.Error())
	}
	if defaults != nil {
		v = defaults.Apply(v)
	}
	v, err := convert.Convert(v, ty)
	if err != nil {
		t.Fatalf("variable %q: value %#v is not a %s: %v", name, v, typeexpr.TypeString(ty), err)
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{name: v})},
		Functions: tfFunctions,
	}
	var failed []string
	for _, vb := range b.Body.Blocks {
		if vb.Type != "validation" {
			continue
		}
		ok, diags := vb.Body.Attributes["condition"].Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("variable %q: condition: %s", name, diags.Error())
		}
		if ok.False() {
			failed = append(failed, literal(t, vb.Body.Attributes["error_message"].Expr).AsString())
		}
	}
	return failed
}

// value returns the variable's value after type conversion: v, or its
// default when v is cty.NilVal.
func (m *tfModule) value(t *testing.T, name string, v cty.Value) cty.Value {
	t.Helper()
	b := m.variables[name]
	if v == cty.NilVal {
		v = literal(t, b.Body.Attributes["default"].Expr)
	}
	ty, defaults, _ := typeexpr.TypeConstraintWithDefaults(b.Body.Attributes["type"].Expr)
	if defaults != nil {
		v = defaults.Apply(v)
	}
	v, err := convert.Convert(v, ty)
	if err != nil {
		t.Fatalf("variable %q: %v", name, err)
	}
	return v
}

// TestTerraformValidations runs every validation on the defaults and
// on the example's values, which must pass, and on values a user could
// plausibly get wrong, which must be refused.
func TestTerraformValidations(t *testing.T) {
	m := loadModule(t, tfDir)
	for name, b := range m.variables {
		if d, ok := b.Body.Attributes["default"]; ok {
			if failed := m.validate(t, name, literal(t, d.Expr)); len(failed) > 0 {
				t.Errorf("variable %q: the default fails its validation: %q", name, failed)
			}
		}
	}

	example := loadModule(t, filepath.Join(tfDir, "examples", "basic"))
	call := example.modules["reportmailer"]
	if call == nil {
		t.Fatal("examples/basic calls no module \"reportmailer\"")
	}
	for name, a := range call.Body.Attributes {
		if name == "source" || name == "cloudfront_public_keys" { // file() needs a file
			continue
		}
		if _, ok := m.variables[name]; !ok {
			t.Errorf("examples/basic sets %q, which the module does not declare", name)
			continue
		}
		if failed := m.validate(t, name, literal(t, a.Expr)); len(failed) > 0 {
			t.Errorf("examples/basic: %s fails validation: %q", name, failed)
		}
	}
	for _, name := range wantRequired {
		if _, ok := call.Body.Attributes[name]; !ok {
			t.Errorf("examples/basic leaves out the required variable %q", name)
		}
	}

	obj := func(kv map[string]cty.Value) cty.Value { return cty.ObjectVal(kv) }
	str, num := cty.StringVal, cty.NumberIntVal
	publicKey := str("-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n")
	tests := []struct {
		variable string
		value    cty.Value
		ok       bool
	}{
		{"name", str("acme-reportmailer"), true},
		{"name", str("Acme_Reportmailer"), false},
		{"ledger_prefix", str("reportmailer/ledger/"), true},
		{"ledger_prefix", str(""), false}, // the lifecycle rule would cover the whole bucket
		{"ledger_prefix", str("reportmailer/ledger"), false},
		{"key_records_prefix", str("keys*/"), false},
		{"reports_prefix", str(""), true},
		{"reports_prefix", str("reports/"), true},
		{"reports_prefix", str("reports"), false},
		{"ledger_retention_days", num(14), false},
		{"ledger_retention_days", num(45), true},
		{"sender_address", str("reports@example.com"), true},
		{"sender_address", str("Reports <reports@example.com>"), false},
		{"cloudfront_public_keys", cty.MapVal(map[string]cty.Value{"k2026": publicKey}), true},
		{"cloudfront_public_keys", cty.MapVal(map[string]cty.Value{"k2026": str("-----BEGIN PRIVATE KEY-----\n...")}), false},
		{"cloudfront_public_keys", cty.MapValEmpty(cty.String), false},
		{"schedules", obj(map[string]cty.Value{"daily": obj(map[string]cty.Value{})}), true},
		{"schedules", obj(map[string]cty.Value{"daily.eu": obj(map[string]cty.Value{})}), false}, // SQS names allow no '.'
		{"schedules", obj(map[string]cty.Value{"daily": obj(map[string]cty.Value{"message_retention_seconds": num(1209600)})}), false},
		{"schedules", obj(map[string]cty.Value{"daily": obj(map[string]cty.Value{"visibility_timeout_seconds": num(43201)})}), false},
		{"schedules", cty.EmptyObjectVal, false},
		{"ses_event_destination", str("kinesis"), false},
		{"ses_event_types", cty.ListVal([]cty.Value{str("SEND"), str("REJECT")}), true},
		{"ses_event_types", cty.ListVal([]cty.Value{str("DELIVERY")}), false}, // SEND settles deliveries
		{"ses_event_types", cty.ListVal([]cty.Value{str("SEND"), str("SENT")}), false},
		{"cloudfront_log_bucket_name", str("logs.example.com"), false},
		{"irsa_oidc_provider_arn", str("arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-2.amazonaws.com/id/ABC"), true},
		{"irsa_oidc_provider_arn", str("oidc.eks.eu-west-2.amazonaws.com/id/ABC"), false},
	}
	for _, tt := range tests {
		if _, ok := m.variables[tt.variable]; !ok {
			t.Errorf("no variable %q", tt.variable)
			continue
		}
		failed := m.validate(t, tt.variable, tt.value)
		if tt.ok && len(failed) > 0 {
			t.Errorf("%s = %#v refused: %q", tt.variable, tt.value, failed)
		}
		if !tt.ok && len(failed) == 0 {
			t.Errorf("%s = %#v accepted", tt.variable, tt.value)
		}
	}
}

// TestTerraformReferences checks that every var., local., resource and
// data reference names something the module declares, as terraform
// validate would.
func TestTerraformReferences(t *testing.T) {
	m := loadModule(t, tfDir)
	walk := func(body *hclsyntax.Body, visit func(hcl.Traversal)) {
		_ = hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			if e, ok := n.(hclsyntax.Expression); ok {
				if _, isScope := e.(*hclsyntax.ScopeTraversalExpr); isScope {
					for _, tr := range e.Variables() {
						visit(tr)
					}
				}
			}
			return nil
		})
	}
	attrName := func(tr hcl.Traversal, i int) string {
		if i >= len(tr) {
			return ""
		}
		if a, ok := tr[i].(hcl.TraverseAttr); ok {
			return a.Name
		}
		return ""
	}
	// Names that are not references: iterators of for expressions and
	// dynamic blocks, and Terraform's own.
	builtin := map[string]bool{"each": true, "count": true, "path": true, "terraform": true, "self": true}
	for _, b := range m.allBlocks() {
		walk(b.Body, func(tr hcl.Traversal) {
			root := tr.RootName()
			switch {
			case root == "var":
				if _, ok := m.variables[attrName(tr, 1)]; !ok {
					t.Errorf("%s: var.%s is not declared", tr.SourceRange(), attrName(tr, 1))
				}
			case root == "local":
				if _, ok := m.locals[attrName(tr, 1)]; !ok {
					t.Errorf("%s: local.%s is not declared", tr.SourceRange(), attrName(tr, 1))
				}
			case root == "data":
				if _, ok := m.data[attrName(tr, 1)+"."+attrName(tr, 2)]; !ok {
					t.Errorf("%s: data.%s.%s is not declared", tr.SourceRange(), attrName(tr, 1), attrName(tr, 2))
				}
			case strings.HasPrefix(root, "aws_"):
				if _, ok := m.resources[root+"."+attrName(tr, 1)]; !ok {
					t.Errorf("%s: %s.%s is not declared", tr.SourceRange(), root, attrName(tr, 1))
				}
			case builtin[root]:
			}
		})
	}
}

// allBlocks returns the module's top-level blocks, locals included.
func (m *tfModule) allBlocks() []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, set := range []map[string]*hclsyntax.Block{m.variables, m.outputs, m.resources, m.data, m.modules} {
		for _, b := range set {
			out = append(out, b)
		}
	}
	// Locals are attributes; wrap each in a block so walk sees it.
	for _, a := range m.locals {
		out = append(out, &hclsyntax.Block{Body: &hclsyntax.Body{Attributes: hclsyntax.Attributes{a.Name: a}}})
	}
	return out
}

// configOutputs are the outputs the worker's config needs, and the
// config field each goes into ("" for those that go elsewhere).
var configOutputs = map[string]string{
	"reports_bucket":             "reports.bucket",
	"reports_prefix":             "reports.prefix",
	"state_bucket":               "ledger.bucket",
	"ledger_prefix":              "ledger.prefix",
	"key_records_prefix":         "links.cloudfront.key_records_prefix",
	"queue_urls":                 "schedules[].queue_url",
	"dead_letter_queue_urls":     "schedules[].dead_letter_queue_url",
	"cloudfront_domain":          "links.cloudfront.domain",
	"cloudfront_key_ids":         "links.cloudfront.keys[].id",
	"cloudfront_distribution_id": "links.cloudfront.distribution_id",
	"ses_configuration_set":      "sender.configuration_set",
	"ses_events_queue_url":       "ses_events.queue_url",
	"worker_role_arn":            "",
}

func TestTerraformOutputs(t *testing.T) {
	m := loadModule(t, tfDir)
	example := readYAML(t, filepath.Join("..", "config", "example.yaml"))
	basePath := filepath.Join("kubernetes", "base", "config.yaml")
	base := readYAML(t, basePath)
	baseText, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	var configYAML string
	if b, ok := m.outputs["config_yaml"]; ok {
		configYAML = m.text(b.Body.Attributes["value"].Expr)
	} else {
		t.Error("no output config_yaml")
	}
	for name, b := range m.outputs {
		if d, ok := b.Body.Attributes["description"]; !ok || strings.TrimSpace(literal(t, d.Expr).AsString()) == "" {
			t.Errorf("output %q has no description", name)
		}
	}
	for name, field := range configOutputs {
		b, ok := m.outputs[name]
		if !ok {
			t.Errorf("no output %q", name)
			continue
		}
		if field == "" {
			continue
		}
		if desc := literal(t, b.Body.Attributes["description"].Expr).AsString(); !strings.Contains(desc, "Config: "+field) {
			t.Errorf("output %q: description %q does not say it goes into %s", name, desc, field)
		}
		if !hasPath(example, strings.Split(field, ".")) {
			t.Errorf("output %q goes into %s, which config/example.yaml does not have", name, field)
		}
		if !hasPath(base, strings.Split(field, ".")) {
			t.Errorf("output %q goes into %s, which %s does not set", name, field, basePath)
		}
		if !regexp.MustCompile(`(?m)terraform:.*\b` + name + `\b`).Match(baseText) {
			t.Errorf("%s does not say which value is the output %q (a \"# terraform: %s\" comment)", basePath, name, name)
		}
		// The fragment config_yaml prints sets the same field.
		leaf := strings.TrimSuffix(field[strings.LastIndex(field, ".")+1:], "[]")
		if !regexp.MustCompile(`\b` + leaf + `\s*=`).MatchString(configYAML) {
			t.Errorf("output config_yaml does not set %s (output %q)", field, name)
		}
	}
}

func readYAML(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// hasPath reports whether the YAML value has the field path, where
// "name[]" means every element of the list name.
func hasPath(v any, path []string) bool {
	if len(path) == 0 {
		return true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	key, list := strings.CutSuffix(path[0], "[]")
	child, ok := m[key]
	if !ok {
		return false
	}
	if !list {
		return hasPath(child, path[1:])
	}
	items, ok := child.([]any)
	if !ok || len(items) == 0 {
		return false
	}
	for _, it := range items {
		if !hasPath(it, path[1:]) {
			return false
		}
	}
	return true
}

// TestTerraformStateLifecycle checks that the state bucket's lifecycle
// rules expire the ledger prefix, under which the worker also keeps its
// slot leases and run history, but never the key records, and that the
// module's defaults are the worker's.
func TestTerraformStateLifecycle(t *testing.T) {
	m := loadModule(t, tfDir)
	def := func(name string) string { return m.value(t, name, cty.NilVal).AsString() }
	if got := def("key_records_prefix"); got != config.KeyRecordsPrefixDefault {
		t.Errorf("key_records_prefix defaults to %q; the worker's default is %q", got, config.KeyRecordsPrefixDefault)
	}
	if got := def("ledger_prefix"); got != config.LedgerPrefixDefault {
		t.Errorf("ledger_prefix defaults to %q; the worker's default is %q", got, config.LedgerPrefixDefault)
	}

	lc := m.resources["aws_s3_bucket_lifecycle_configuration.state"]
	if lc == nil {
		t.Fatal("no aws_s3_bucket_lifecycle_configuration.state")
	}
	if got := m.text(lc.Body.Attributes["bucket"].Expr); got != "aws_s3_bucket.state.id" {
		t.Errorf("the state lifecycle configuration is on %s", got)
	}
	// The rules are built from local.expiring_prefixes; a static rule
	// would escape this check.
	var rulePrefixes []string
	for _, b := range lc.Body.Blocks {
		switch {
		case b.Type == "rule":
			t.Errorf("%s: a static lifecycle rule; list its prefix in local.expiring_prefixes", b.DefRange())
		case b.Type == "dynamic" && b.Labels[0] == "rule":
			if got := m.text(b.Body.Attributes["for_each"].Expr); got != "local.expiring_prefixes" {
				t.Errorf("the lifecycle rules iterate over %s, not local.expiring_prefixes", got)
			}
		}
	}
	expiring, ok := m.locals["expiring_prefixes"].Expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		t.Fatal("local.expiring_prefixes is not an object")
	}
	for _, item := range expiring.Items {
		src := m.text(item.ValueExpr)
		if strings.Contains(src, "key_records_prefix") {
			t.Errorf("local.expiring_prefixes expires the key records: %s", src)
		}
		for _, tr := range item.ValueExpr.Variables() {
			if tr.RootName() == "var" && strings.HasSuffix(tr[1].(hcl.TraverseAttr).Name, "_prefix") {
				rulePrefixes = append(rulePrefixes, tr[1].(hcl.TraverseAttr).Name)
			}
		}
	}
	sort.Strings(rulePrefixes)
	if want := []string{"ledger_prefix"}; !slices.Equal(rulePrefixes, want) {
		t.Errorf("lifecycle rules expire %v, want %v", rulePrefixes, want)
	}
	// The run history expires with the ledger's rule only while the
	// worker keeps it under ledger.prefix, as the cluster's config does.
	b, err := os.ReadFile(filepath.Join("kubernetes", "base", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b, nil)
	if err != nil {
		t.Fatalf("kubernetes/base/config.yaml: %v", err)
	}
	if !strings.HasPrefix(cfg.Ledger.HistoryPrefix, def("ledger_prefix")) {
		t.Errorf("the run history is written under %q, outside ledger_prefix %q: no lifecycle rule expires it", cfg.Ledger.HistoryPrefix, def("ledger_prefix"))
	}
	keys := def("key_records_prefix")
	for _, p := range rulePrefixes {
		if d := def(p); strings.HasPrefix(keys, d) || strings.HasPrefix(d, keys) {
			t.Errorf("the default %s %q overlaps key_records_prefix %q: its rule would expire key records", p, d, keys)
		}
	}
	// The guard for values a caller sets.
	var guarded bool
	for _, b := range lc.Body.Blocks {
		if b.Type == "lifecycle" {
			for _, p := range b.Body.Blocks {
				guarded = guarded || (p.Type == "precondition" && strings.Contains(m.text(p.Body.Attributes["condition"].Expr), "overlapping_prefixes"))
			}
		}
	}
	if !guarded {
		t.Error("the state lifecycle configuration has no precondition on overlapping prefixes")
	}
}

// TestTerraformQueues checks each schedule's queue pair: a redrive
// policy to its own DLQ, a DLQ that outlives the source's messages,
// and S3 notifications allowed by a queue policy bound to the bucket.
func TestTerraformQueues(t *testing.T) {
	m := loadModule(t, tfDir)
	src, dlq := m.resources["aws_sqs_queue.source"], m.resources["aws_sqs_queue.dead_letter"]
	if src == nil || dlq == nil {
		t.Fatal("want aws_sqs_queue.source and aws_sqs_queue.dead_letter")
	}
	if rp, ok := src.Body.Attributes["redrive_policy"]; !ok || !strings.Contains(m.text(rp.Expr), "aws_sqs_queue.dead_letter[each.key].arn") {
		t.Error("the source queue's redrive_policy does not target its own dead-letter queue")
	}
	if got := m.text(dlq.Body.Attributes["message_retention_seconds"].Expr); got != "var.dead_letter_retention_seconds" {
		t.Errorf("the DLQ's retention is %s", got)
	}
	dlqRetention := m.value(t, "dead_letter_retention_seconds", cty.NilVal)
	schedules := m.value(t, "schedules", cty.ObjectVal(map[string]cty.Value{"x": cty.EmptyObjectVal}))
	srcRetention := schedules.Index(cty.StringVal("x")).GetAttr("message_retention_seconds")
	if dlqRetention.LessThanOrEqualTo(srcRetention).True() {
		t.Errorf("default DLQ retention %s does not exceed the default source retention %s", dlqRetention.AsBigFloat(), srcRetention.AsBigFloat())
	}

	if ev := m.resources["aws_sqs_queue.ses_events"]; ev == nil || !strings.Contains(m.text(ev.Body.Attributes["redrive_policy"].Expr), "aws_sqs_queue.ses_events_dead_letter[0].arn") {
		t.Error("the SES events queue has no redrive policy to its own dead-letter queue")
	}

	policy := m.data["aws_iam_policy_document.s3_to_queue"]
	if policy == nil {
		t.Fatal("no aws_iam_policy_document.s3_to_queue")
	}
	text := m.rangeText(policy.Body.SrcRange)
	for _, want := range []string{`"s3.amazonaws.com"`, `"aws:SourceArn"`, "aws_s3_bucket.reports.arn", `"aws:SourceAccount"`, `"sqs:SendMessage"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the S3-to-SQS queue policy lacks %s", want)
		}
	}
	n := m.resources["aws_s3_bucket_notification.reports"]
	if n == nil || !strings.Contains(m.text(n.Body.Attributes["depends_on"].Expr), "aws_sqs_queue_policy.s3_to_queue") {
		t.Error("the bucket notification must depend on the queue policy: S3 refuses a destination it may not send to")
	}
}

// TestTerraformCloudFront checks that the distribution reads the
// bucket through Origin Access Control, trusts the key group, and that
// only it may read the bucket.
func TestTerraformCloudFront(t *testing.T) {
	m := loadModule(t, tfDir)
	d := m.resources["aws_cloudfront_distribution.reports"]
	if d == nil {
		t.Fatal("no aws_cloudfront_distribution.reports")
	}
	all := m.rangeText(d.Body.SrcRange)
	for _, want := range []string{
		"origin_access_control_id = aws_cloudfront_origin_access_control.reports.id",
		"trusted_key_groups     = [aws_cloudfront_key_group.signing.id]",
		`viewer_protocol_policy = "https-only"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the distribution lacks %q", want)
		}
	}
	if strings.Contains(all, "s3_origin_config") {
		t.Error("the distribution uses an origin access identity; use Origin Access Control")
	}
	bp := m.data["aws_iam_policy_document.reports_bucket"]
	text := m.rangeText(bp.Body.SrcRange)
	for _, want := range []string{`"cloudfront.amazonaws.com"`, `"AWS:SourceArn"`, "aws_cloudfront_distribution.reports.arn"} {
		if !strings.Contains(text, want) {
			t.Errorf("the reports bucket policy lacks %s", want)
		}
	}
	pab := m.resources["aws_s3_bucket_public_access_block.reports"]
	for _, k := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
		if a, ok := pab.Body.Attributes[k]; !ok || literal(t, a.Expr).False() {
			t.Errorf("the reports bucket's public access block does not set %s", k)
		}
	}
}

// TestTerraformRevocation: with link_revocation, the module publishes
// the shipped deny-revoked function with the deny list's KeyValueStore
// associated, and attaches it to the reports' behaviour for viewer
// requests, where it sees every request, cache hits included.
func TestTerraformRevocation(t *testing.T) {
	m := loadModule(t, tfDir)
	f := m.resources["aws_cloudfront_function.deny_revoked"]
	if f == nil {
		t.Fatal("no aws_cloudfront_function.deny_revoked")
	}
	text := m.rangeText(f.Body.SrcRange)
	for _, want := range []string{
		`runtime = "cloudfront-js-2.0"`,
		"publish = true",
		`file("${path.module}/../cloudfront-function/deny-revoked.js")`,
		"key_value_store_associations = [aws_cloudfront_key_value_store.revoked[0].arn]",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the function lacks %q", want)
		}
	}
	if m.resources["aws_cloudfront_key_value_store.revoked"] == nil {
		t.Error("no aws_cloudfront_key_value_store.revoked")
	}
	if _, err := os.Stat(filepath.Join(tfDir, "..", "cloudfront-function", "deny-revoked.js")); err != nil {
		t.Errorf("the function's code: %v", err)
	}
	d := m.rangeText(m.resources["aws_cloudfront_distribution.reports"].Body.SrcRange)
	for _, want := range []string{`dynamic "function_association"`, "for_each = aws_cloudfront_function.deny_revoked", `event_type   = "viewer-request"`} {
		if !strings.Contains(d, want) {
			t.Errorf("the distribution's behaviour lacks %q", want)
		}
	}
	out := m.rangeText(m.outputs["config_yaml"].Body.SrcRange)
	if !strings.Contains(out, `"key_value_store_arn" => s.arn`) || !strings.Contains(out, `"access_logs" =>`) {
		t.Error("config_yaml does not give links.cloudfront.key_value_store_arn and access_logs")
	}
}

// TestTerraformLeavesRotationAlone: `reportmailer keys rotate` and
// `keys retire` set the trusted key groups of the distribution's
// behaviours outside Terraform, so the distribution ignores changes to
// each behaviour's trusted_key_groups, and to nothing more: the next
// apply must neither put the module's key group back (breaking the
// rotated-in key's links) nor stop managing the rest of the behaviour.
func TestTerraformLeavesRotationAlone(t *testing.T) {
	m := loadModule(t, tfDir)
	d := m.resources["aws_cloudfront_distribution.reports"]
	if d == nil {
		t.Fatal("no aws_cloudfront_distribution.reports")
	}
	// What rotate owns: trusted_key_groups of every behaviour that sets it.
	var want []string
	ordered := 0
	for _, b := range d.Body.Blocks {
		var path string
		switch b.Type {
		case "default_cache_behavior":
			path = "default_cache_behavior[0]"
		case "ordered_cache_behavior":
			path = fmt.Sprintf("ordered_cache_behavior[%d]", ordered)
			ordered++
		case "dynamic":
			if b.Labels[0] == "ordered_cache_behavior" || b.Labels[0] == "default_cache_behavior" {
				t.Fatalf("%s: a dynamic %s: its index is unknown, so ignore_changes cannot name it", b.DefRange(), b.Labels[0])
			}
			continue
		default:
			continue
		}
		if _, ok := b.Body.Attributes["trusted_key_groups"]; ok {
			want = append(want, path+".trusted_key_groups")
		}
	}
	if len(want) == 0 {
		t.Fatal("no behaviour of the distribution trusts a key group")
	}

	var got []string
	for _, b := range d.Body.Blocks {
		if b.Type != "lifecycle" {
			continue
		}
		a, ok := b.Body.Attributes["ignore_changes"]
		if !ok {
			continue
		}
		tuple, ok := a.Expr.(*hclsyntax.TupleConsExpr)
		if !ok {
			t.Fatalf("%s: ignore_changes is %s, not a list of attributes", a.SrcRange, m.text(a.Expr))
		}
		for _, e := range tuple.Exprs {
			tr, diags := hcl.AbsTraversalForExpr(e)
			if diags.HasErrors() {
				t.Fatalf("%s: %s", e.Range(), diags.Error())
			}
			got = append(got, traversalString(tr))
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the distribution ignores changes to %q; want exactly %q, which keys rotate and keys retire set", got, want)
	}
	// The comment says why, and the runbook tells the operator.
	if text := m.rangeText(d.Body.SrcRange); !strings.Contains(text, "keys rotate") {
		t.Error("the distribution's ignore_changes has no comment naming keys rotate")
	}
	ops, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ops), "ignore_changes") || !strings.Contains(string(ops), "default_cache_behavior[0].trusted_key_groups") {
		t.Error("docs/operations.md does not say that the module leaves the trusted key groups to keys rotate")
	}
}

// traversalString writes a traversal as Terraform does: a.b[0].c.
func traversalString(tr hcl.Traversal) string {
	var b strings.Builder
	for _, s := range tr {
		switch s := s.(type) {
		case hcl.TraverseRoot:
			b.WriteString(s.Name)
		case hcl.TraverseAttr:
			b.WriteString("." + s.Name)
		case hcl.TraverseIndex:
			if s.Key.Type() == cty.Number {
				b.WriteString("[" + s.Key.AsBigFloat().Text('f', 0) + "]")
			} else {
				b.WriteString(fmt.Sprintf("[%q]", s.Key.AsString()))
			}
		}
	}
	return b.String()
}
