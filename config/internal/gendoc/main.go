// Command gendoc writes docs/configuration.md: every option of the
// config file, with its type, default, environment variable and an
// example, taken from the doc comments of the types in config/*.go
// (walking the yaml tags from config.Config) and from the values in
// config/example.yaml. Run it with
//
//	go generate ./config
//
// The test next to it fails when docs/configuration.md differs from
// what it writes, so the reference cannot drift from the code.
package main

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/doc"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

func main() {
	dir := flag.String("dir", ".", "the config package's directory")
	example := flag.String("example", "example.yaml", "the example config whose values are the examples")
	out := flag.String("out", "../docs/configuration.md", "the file to write")
	flag.Parse()
	b, err := generate(*dir, *example)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gendoc: %v\n", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "gendoc: %v\n", err)
		os.Exit(1)
	}
}

// importPath is the config package's, for doc links.
const importPath = "github.com/reportmailer/reportmailer/config"

// option is one key of the config file: a section (a struct) or a
// leaf (a value).
type option struct {
	path    string // YAML path: "links.cloudfront.keys[].id"
	key     string // its last key: "id"
	goName  string // the Go field: "ID"
	kind    string // for a leaf: "string", "duration", ...
	doc     string // the field's doc comment
	typeDoc string // for a section: its type's doc comment
	env     string // the environment variable, or "" when there is none
	example string // a YAML snippet setting it, or ""
	depth   int    // 0 for top-level keys
	section bool
	list    bool // a section that is a list of structs ("schedules")
}

// generate returns docs/configuration.md for the config package in dir.
func generate(dir, examplePath string) ([]byte, error) {
	pkg, w, err := collect(dir, examplePath)
	if err != nil {
		return nil, err
	}
	return render(pkg, w.options, w.fields), nil
}

// collect reads the package and the example, and walks the options.
func collect(dir, examplePath string) (*doc.Package, *walker, error) {
	pkg, err := parsePackage(dir)
	if err != nil {
		return nil, nil, err
	}
	examples, err := loadExamples(examplePath)
	if err != nil {
		return nil, nil, err
	}
	types := map[string]*doc.Type{}
	for _, t := range pkg.Types {
		types[t.Name] = t
	}
	root, ok := types["Config"]
	if !ok {
		return nil, nil, errors.New("no type Config")
	}
	w := &walker{types: types, examples: examples, fields: map[string]string{}}
	if err := w.walk(root, "", "REPORTMAILER", nil, 0); err != nil {
		return nil, nil, err
	}
	return pkg, w, nil
}

func parsePackage(dir string) (*doc.Package, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no Go files", dir)
	}
	return doc.NewFromFiles(fset, files, importPath)
}

type walker struct {
	types    map[string]*doc.Type
	examples []*yaml.Node // example.yaml, then its commented-out alternatives
	options  []option
	fields   map[string]string // "Pacing.RateFraction" -> "pacing.rate_fraction", for doc links
}

// walk adds the options of struct type t, whose YAML path is prefix
// (and its keys' in the node trail) and whose environment variables
// start with env.
func (w *walker) walk(t *doc.Type, prefix, env string, trail []string, depth int) error {
	st, ok := t.Decl.Specs[0].(*ast.TypeSpec).Type.(*ast.StructType)
	if !ok {
		return fmt.Errorf("%s is not a struct", t.Name)
	}
	siblings := map[string]string{} // Go name -> YAML key
	for _, f := range st.Fields.List {
		for _, n := range f.Names {
			if key := yamlKey(f); key != "" && strings.Contains(key, "_") {
				siblings[n.Name] = key
			}
		}
	}
	for _, f := range st.Fields.List {
		if len(f.Names) != 1 || !f.Names[0].IsExported() {
			continue
		}
		key := yamlKey(f)
		if key == "" {
			return fmt.Errorf("%s.%s has no yaml tag", t.Name, f.Names[0].Name)
		}
		if key == "-" {
			continue
		}
		o := option{
			path: prefix + key, key: key, goName: f.Names[0].Name, depth: depth,
			doc: fieldDoc(f.Doc.Text(), f.Names[0].Name, key, siblings),
		}
		typeName, list := structType(f.Type)
		envName := env + "_" + strings.ToUpper(key)
		if st := w.types[typeName]; st != nil {
			o.section, o.list = true, list
			o.typeDoc = typeDoc(st)
			w.options = append(w.options, o)
			childPrefix, childEnv, childTrail := o.path+".", envName, append(slices.Clip(trail), key)
			if list {
				childPrefix = o.path + "[]."
				childEnv += "_<" + strings.ToUpper(elemKey(st)) + ">"
				childTrail = append(childTrail, "[]")
			}
			if err := w.walk(st, childPrefix, childEnv, childTrail, depth+1); err != nil {
				return err
			}
			continue
		}
		w.fields[t.Name+"."+o.goName] = o.path
		o.kind = kind(f.Type)
		if !strings.HasPrefix(o.kind, "map") {
			o.env = envName
		}
		o.example = w.example(append(slices.Clip(trail), key))
		w.options = append(w.options, o)
	}
	return nil
}

func yamlKey(f *ast.Field) string {
	if f.Tag == nil {
		return ""
	}
	tag, err := strconv.Unquote(f.Tag.Value)
	if err != nil {
		return ""
	}
	key, _, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
	return key
}

// structType names the type of a field of type T, *T or []T, which
// the caller looks up among the package's structs.
func structType(e ast.Expr) (name string, list bool) {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name, false
	case *ast.StarExpr:
		n, _ := structType(t.X)
		return n, false
	case *ast.ArrayType:
		if id, ok := t.Elt.(*ast.Ident); ok {
			return id.Name, true
		}
	}
	return "", false
}

// elemKey is the field that addresses a list element from the
// environment, as config.ApplyEnv does: its Name, or else its ID.
func elemKey(t *doc.Type) string {
	for _, f := range t.Decl.Specs[0].(*ast.TypeSpec).Type.(*ast.StructType).Fields.List {
		for _, n := range f.Names {
			if n.Name == "Name" {
				return "name"
			}
		}
	}
	return "id"
}

func kind(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.Ident:
		switch t.Name {
		case "int":
			return "integer"
		case "float64":
			return "number"
		}
		return t.Name
	case *ast.SelectorExpr:
		if t.Sel.Name == "Duration" {
			return "duration"
		}
		return t.Sel.Name
	case *ast.ArrayType:
		return "list of " + kind(t.Elt) + "s"
	case *ast.MapType:
		return "map of " + kind(t.Key) + " to " + kind(t.Value)
	case *ast.StarExpr:
		return kind(t.X)
	}
	return fmt.Sprintf("%T", e)
}

// typeDoc is what a struct type's doc comment adds to the doc of the
// field that holds it: all but its first sentence, which only names
// the type.
func typeDoc(t *doc.Type) string {
	_, rest, ok := strings.Cut(strings.TrimSpace(t.Doc), ".\n")
	if !ok {
		_, rest, _ = strings.Cut(strings.TrimSpace(t.Doc), ". ")
	}
	siblings := map[string]string{}
	for _, f := range t.Decl.Specs[0].(*ast.TypeSpec).Type.(*ast.StructType).Fields.List {
		for _, n := range f.Names {
			if key := yamlKey(f); strings.Contains(key, "_") || n.Name == "Keys" {
				siblings[n.Name] = key
			}
		}
	}
	return fieldDoc(rest, "", "", siblings)
}

// fieldDoc is a field's doc comment with its Go name, where it leads,
// and the Go names of its multi-word siblings made YAML keys.
func fieldDoc(text, goName, key string, siblings map[string]string) string {
	text = strings.TrimSpace(text)
	if goName == "" {
	} else if rest, ok := strings.CutPrefix(text, goName+" "); ok {
		text = "`" + key + "` " + rest
	} else if rest, ok := strings.CutPrefix(text, goName+", "); ok {
		text = "`" + key + "`, " + rest
	}
	for _, name := range slices.Sorted(maps.Keys(siblings)) {
		re := regexp.MustCompile(`(^|[^\w.\[` + "`" + `])` + name + `\b`)
		text = re.ReplaceAllString(text, "${1}`"+siblings[name]+"`")
	}
	return text
}

// loadExamples parses the example config, and a second time with the
// commented-out alternatives ("# key_id: K2J...") switched on, for the
// options the example shows only as an alternative.
func loadExamples(path string) ([]*yaml.Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var main yaml.Node
	if err := yaml.Unmarshal(b, &main); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	nodes := []*yaml.Node{&main}
	alt := regexp.MustCompile(`(?m)^(\s*)# ([a-z_]+: .*)$`).ReplaceAll(b, []byte("$1$2"))
	var other yaml.Node
	if yaml.Unmarshal(alt, &other) == nil {
		nodes = append(nodes, &other)
	}
	return nodes, nil
}

// example returns a YAML snippet that sets the option at trail (keys,
// with "[]" for a list element) as the example config does, or "".
func (w *walker) example(trail []string) string {
	for _, doc := range w.examples {
		if len(doc.Content) == 0 {
			continue
		}
		if v := lookup(doc.Content[0], trail); v != nil {
			var b bytes.Buffer
			enc := yaml.NewEncoder(&b)
			enc.SetIndent(2)
			if err := enc.Encode(wrap(trail, stripComments(v))); err != nil {
				return ""
			}
			return b.String()
		}
	}
	return ""
}

// lookup finds the value at trail under n, taking the first element of
// a list that has the rest of the trail.
func lookup(n *yaml.Node, trail []string) *yaml.Node {
	if len(trail) == 0 {
		return n
	}
	switch {
	case trail[0] == "[]" && n.Kind == yaml.SequenceNode:
		for _, item := range n.Content {
			if v := lookup(item, trail[1:]); v != nil {
				return v
			}
		}
	case n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == trail[0] {
				return lookup(n.Content[i+1], trail[1:])
			}
		}
	}
	return nil
}

// wrap nests v in the mappings and lists that trail names.
func wrap(trail []string, v *yaml.Node) *yaml.Node {
	for i := len(trail) - 1; i >= 0; i-- {
		if trail[i] == "[]" {
			v = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{v}}
			continue
		}
		v = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: trail[i]}, v}}
	}
	return v
}

func stripComments(n *yaml.Node) *yaml.Node {
	c := *n
	c.HeadComment, c.LineComment, c.FootComment = "", "", ""
	c.Content = nil
	for _, k := range n.Content {
		c.Content = append(c.Content, stripComments(k))
	}
	return &c
}

var (
	defaultRE  = regexp.MustCompile(`(?s)\bDefault\b:?\s*(.*?)\.(\s|$)`)
	requiredRE = regexp.MustCompile(`(?s)\b(Required\b.*?)[.;](\s|$)`)
)

// defaultOf is the option's default in a few words, from the "Default
// ..." or "Required ..." sentence of its doc comment.
func defaultOf(doc string) string {
	if m := requiredRE.FindStringSubmatch(doc); m != nil {
		return strings.ToLower(m[1][:1]) + m[1][1:]
	}
	if m := defaultRE.FindStringSubmatch(doc); m != nil {
		d := m[1]
		if i := strings.IndexAny(d, ";:"); i > 0 {
			d = d[:i]
		}
		return strings.Join(strings.Fields(d), " ")
	}
	return ""
}

// anchor is GitHub's id for a heading of text.
func anchor(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func render(pkg *doc.Package, opts []option, fields map[string]string) []byte {
	markdown := func(text string) string { return markdown(pkg, fields, text) }
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Configuration\n\n")
	p("<!-- Code generated by config/internal/gendoc from config/*.go and config/example.yaml. DO NOT EDIT. -->\n\n")
	p("> This file is generated. To change it, edit the doc comments of the types in [config/](../config) or the values in [config/example.yaml](../config/example.yaml), then run `go generate ./config`. `go test ./config/...` fails while it is out of date.\n\n")
	p("reportmailer reads one YAML file, named by `-config FILE` or `$REPORTMAILER_CONFIG`. [config/example.yaml](../config/example.yaml) is a complete example. `reportmailer config check -config FILE` validates a file without touching AWS.\n\n")
	p("- Unknown keys are errors, and so is a bad value, reported with its path and value: `schedules[0].mode: \"weekly\" is not each or digest`.\n")
	p("- Durations are Go durations: `90s`, `5m`, `168h` (there is no `d`).\n")
	p("- Any option with an environment variable below can be set from the environment, which wins over the file. A list's items are comma-separated. A schedule is addressed by its name and a CloudFront key by its id, upper-cased with other characters turned to `_`: `REPORTMAILER_SCHEDULES_DAILY_QUEUE_URL`, `REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2JCJMDEHXQW5F_ACTIVE`. A `REPORTMAILER_` variable that names no option is an error.\n")
	p("- AWS credentials, region and endpoints are not options: they come from the SDK's own chain (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL_SQS`, ...).\n\n")

	p("| option | type | default |\n| --- | --- | --- |\n")
	for _, o := range opts {
		if o.section {
			continue
		}
		p("| [`%s`](#%s) | %s | %s |\n", o.path, anchor(o.path), o.kind, cell(cmp.Or(defaultOf(o.doc), "none")))
	}
	for _, o := range opts {
		switch {
		case o.section:
			p("\n## `%s`\n\n", o.path)
			p("%s\n", markdown(o.doc))
			if o.list {
				p("\nA list; each item has the options below.\n")
			}
			if o.typeDoc != "" {
				p("\n%s\n", markdown(o.typeDoc))
			}
		default:
			if o.depth == 0 {
				p("\n## `%s`\n\n", o.path)
			} else {
				p("\n### `%s`\n\n", o.path)
			}
			p("%s\n\n", markdown(o.doc))
			p("- Type: %s\n", o.kind)
			p("- Default: %s\n", cmp.Or(defaultOf(o.doc), "none"))
			if o.env != "" {
				p("- Environment: `%s`\n", o.env)
			} else {
				p("- Environment: none (the file only)\n")
			}
			if o.example != "" {
				p("\n```yaml\n%s```\n", o.example)
			} else {
				p("\n*No example in config/example.yaml.*\n")
			}
		}
	}
	return b.Bytes()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// markdown renders a doc comment: paragraphs, lists and code blocks,
// with doc links as plain text. Text keeps the backquotes the comments
// use for commands and keys; '*' and '<' are escaped outside them.
func markdown(pkg *doc.Package, fields map[string]string, text string) string {
	d := pkg.Parser().Parse(text)
	var out []string
	for _, block := range d.Content {
		switch bl := block.(type) {
		case *comment.Paragraph:
			out = append(out, inline(bl.Text, fields))
		case *comment.Code:
			out = append(out, "```\n"+bl.Text+"```")
		case *comment.List:
			var items []string
			for i, it := range bl.Items {
				marker := "-"
				if it.Number != "" {
					marker = strconv.Itoa(i+1) + "."
				}
				var paras []string
				for _, c := range it.Content {
					if para, ok := c.(*comment.Paragraph); ok {
						paras = append(paras, inline(para.Text, fields))
					}
				}
				items = append(items, marker+" "+strings.Join(paras, " "))
			}
			out = append(out, strings.Join(items, "\n"))
		case *comment.Heading:
			out = append(out, "**"+inline(bl.Text, fields)+"**")
		}
	}
	return strings.Join(out, "\n\n")
}

func inline(text []comment.Text, fields map[string]string) string {
	var b strings.Builder
	for _, t := range text {
		switch t := t.(type) {
		case comment.Plain:
			b.WriteString(string(t))
		case *comment.Link:
			if t.Auto {
				b.WriteString(t.URL)
			} else {
				fmt.Fprintf(&b, "[%s](%s)", inline(t.Text, fields), t.URL)
			}
		case *comment.DocLink:
			if path, ok := fields[t.Recv+"."+t.Name]; ok {
				fmt.Fprintf(&b, "[`%s`](#%s)", path, anchor(path))
			} else {
				b.WriteString(inline(t.Text, fields))
			}
		}
	}
	s := strings.ReplaceAll(b.String(), "\n", " ")
	parts := strings.Split(s, "`")
	for i := 0; i < len(parts); i += 2 { // outside code spans
		parts[i] = strings.NewReplacer("*", `\*`, "<", "&lt;").Replace(parts[i])
	}
	return strings.Join(parts, "`")
}
