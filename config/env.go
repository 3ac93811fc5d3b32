package config

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// An empty file decodes to io.EOF, which is fine: everything may come
// from the environment.
var errEOF = io.EOF

// EnvPrefix starts every environment override.
const EnvPrefix = "REPORTMAILER_"

// EnvConfig names the config file when -config is not given. It is not
// an override.
const EnvConfig = "REPORTMAILER_CONFIG"

// ApplyEnv overrides fields from environ (KEY=VALUE pairs). A field's
// variable is EnvPrefix plus its YAML path in upper case, joined by "_":
// REPORTMAILER_SENDER_FROM, REPORTMAILER_LINKS_CLOUDFRONT_KEY_ID. A
// schedule's fields are addressed by its name, upper-cased with other
// characters turned to "_": REPORTMAILER_SCHEDULES_DAILY_QUEUE_URL; a
// CloudFront key's by its id: REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K1_ACTIVE.
// Lists are comma-separated. Setting a CloudFront field creates the
// cloudfront section. A variable that names no field is an error, so a
// typo does not silently do nothing; and [Config.Validate] refuses
// names that would give two fields one variable ("daily.eu" and
// "daily-eu"), so that one override cannot set both.
func ApplyEnv(c *Config, environ []string) error {
	vars := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, EnvPrefix) && k != EnvConfig {
			vars[k] = v
		}
	}
	if len(vars) == 0 {
		return nil
	}
	if c.Links.CloudFront == nil {
		for k := range vars {
			if strings.HasPrefix(k, EnvPrefix+"LINKS_CLOUDFRONT_") {
				c.Links.CloudFront = &CloudFront{}
				break
			}
		}
	}
	used := map[string]bool{}
	err := walkEnv(reflect.ValueOf(c).Elem(), strings.TrimSuffix(EnvPrefix, "_"), "", envVisitor{
		field: func(name, _ string, f reflect.Value) error {
			s, ok := vars[name]
			if !ok {
				return nil
			}
			used[name] = true
			if err := setScalar(f, s); err != nil {
				return fmt.Errorf("environment %s: %s %v", name, quote(s), err)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if !used[k] {
			errs = append(errs, fmt.Errorf("environment %s: no such setting", envName(k)))
		}
	}
	return errors.Join(errs...)
}

var plainEnvNameRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// envName is the variable name k as an error shows it: as it is, or
// quoted when it holds anything but letters, digits and '_', so that
// it cannot break or forge the line.
func envName(k string) string {
	if plainEnvNameRE.MatchString(k) {
		return k
	}
	return quote(k)
}

var envNameRE = regexp.MustCompile(`[^A-Z0-9]`)

// envVisitor is told about each setting walkEnv finds.
type envVisitor struct {
	// field is called for each field set from one variable: name is
	// the variable, path the field's YAML path (schedules[0].queue_url).
	field func(name, path string, f reflect.Value) error
	// elem, if set, is called for each list element addressed by its
	// name or id: prefix starts its variables, path is its YAML path
	// (schedules[0]) and id what addresses it ("daily.eu").
	elem func(prefix, path, id string)
}

// walkEnv visits the settings of the struct v whose variables start
// with prefix and whose YAML path is path.
func walkEnv(v reflect.Value, prefix, path string, visit envVisitor) error {
	t := v.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fpath := tag
		if path != "" {
			fpath = path + "." + tag
		}
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Struct:
			if err := walkEnv(f, name, fpath, visit); err != nil {
				return err
			}
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct:
			if !f.IsNil() {
				if err := walkEnv(f.Elem(), name, fpath, visit); err != nil {
					return err
				}
			}
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			for j := range f.Len() {
				elem := elemName(f.Index(j))
				id := envNameRE.ReplaceAllString(strings.ToUpper(elem), "_")
				if id == "" {
					continue // cannot be addressed
				}
				epath := fmt.Sprintf("%s[%d]", fpath, j)
				if visit.elem != nil {
					visit.elem(name+"_"+id, epath, elem)
				}
				if err := walkEnv(f.Index(j), name+"_"+id, epath, visit); err != nil {
					return err
				}
			}
		default:
			if err := visit.field(name, fpath, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// validateEnvNames reports the environment variables that would set
// more than one field: those of list elements whose names differ only
// in case or punctuation (schedules "daily.eu", "daily-eu" and
// "daily_eu" all read REPORTMAILER_SCHEDULES_DAILY_EU_*), and any other
// variable two fields share (schedule "a"'s dead_letter_queue_url and
// schedule "a-dead-letter"'s queue_url). Such a variable would set both
// fields, so the names must change whether or not it is set today.
// Elements with the very same name are left to Validate's own checks.
func (c *Config) validateEnvNames() []error {
	type element struct{ path, id string }
	elems := map[string][]element{} // variable prefix -> elements
	ids := map[string]string{}      // element path -> its name or id
	fields := map[string][]string{} // variable -> field paths
	_ = walkEnv(reflect.ValueOf(c).Elem(), strings.TrimSuffix(EnvPrefix, "_"), "", envVisitor{
		field: func(name, path string, _ reflect.Value) error {
			fields[name] = append(fields[name], path)
			return nil
		},
		elem: func(prefix, path, id string) {
			elems[prefix] = append(elems[prefix], element{path, id})
			ids[path] = id
		},
	})
	var errs []error
	reported := map[[2]string]bool{} // pairs of elements
	for _, prefix := range slices.Sorted(maps.Keys(elems)) {
		es := elems[prefix]
		for i := 1; i < len(es); i++ {
			var first *element // the earliest element es[i] clashes with
			for _, e := range es[:i] {
				if e.id == es[i].id {
					continue
				}
				reported[[2]string{e.path, es[i].path}] = true
				if first == nil {
					first = &e
				}
			}
			if first != nil {
				errs = append(errs, &FieldError{Field: es[i].path + "." + idField(es[i].path), Value: es[i].id,
					Reason: fmt.Sprintf("and %s.%s %s read the same environment variables, %s_*: rename one", first.path, idField(first.path), quote(first.id), prefix)})
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		paths := fields[name]
		if len(paths) < 2 {
			continue
		}
		a, b := paths[0], paths[1]
		ea, eb := elemOf(a), elemOf(b)
		if reported[[2]string{ea, eb}] || (ids[ea] != "" && ids[ea] == ids[eb]) {
			continue
		}
		reported[[2]string{ea, eb}] = true
		var rename []string
		for _, e := range []string{ea, eb} {
			if e != "" {
				rename = append(rename, fmt.Sprintf("%s (%s)", e, quote(ids[e])))
			}
		}
		errs = append(errs, &FieldError{Field: b, Reason: fmt.Sprintf("and %s both read the environment variable %s: rename %s",
			a, name, strings.Join(rename, " or "))})
	}
	return errs
}

// elemOf returns the path of the list element a field path is in
// ("schedules[1]" for "schedules[1].queue_url"), or "".
func elemOf(path string) string {
	if i := strings.LastIndex(path, "]"); i >= 0 {
		return path[:i+1]
	}
	return ""
}

// idField is the field that names a list element: name for schedules,
// id for CloudFront keys.
func idField(elemPath string) string {
	if strings.HasPrefix(elemPath, "schedules[") {
		return "name"
	}
	return "id"
}

// elemName is what addresses a list element from the environment: its
// Name (schedules) or its ID (CloudFront keys).
func elemName(v reflect.Value) string {
	for _, field := range []string{"Name", "ID"} {
		if f := v.FieldByName(field); f.IsValid() && f.Kind() == reflect.String {
			return f.String()
		}
	}
	return ""
}

func setScalar(f reflect.Value, s string) error {
	switch {
	case f.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("is not a duration like 90s or 5m")
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("is not a whole number")
		}
		f.SetInt(int64(n))
	case f.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("is not a number")
		}
		f.SetFloat(x)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("is not true or false")
		}
		f.SetBool(b)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		var items []string
		for _, it := range strings.Split(s, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		f.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}
