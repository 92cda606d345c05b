package termconfig

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const docsPath = "../../docs/terminal-config.md"

// docRow is a table row of the reference: its key and the text of its cells.
type docRow struct {
	key   string
	cells []string
}

// docSections reads the reference tables of docs/terminal-config.md: for each "## `name`"
// section (and "## Top level" as ""), the rows whose first cell is a backticked word.
func docSections(t *testing.T) (map[string][]docRow, string) {
	t.Helper()
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	heading := regexp.MustCompile("^## `([^`]+)`")
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	sections := map[string][]docRow{}
	current, inSection := "", false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "## ") {
			m := heading.FindStringSubmatch(line)
			switch {
			case m != nil:
				current, inSection = m[1], true
			case line == "## Top level":
				current, inSection = "", true
			case line == "## Operation names":
				current, inSection = "#operations", true
			default:
				inSection = false
			}
			continue
		}
		if m := row.FindStringSubmatch(line); inSection && m != nil {
			cells := strings.Split(strings.Trim(line, "| "), " | ")
			sections[current] = append(sections[current], docRow{key: m[1], cells: cells})
		}
	}
	return sections, text
}

// wireKeys lists the keys of a struct type as the documentation names them: nested structs
// flattened with ".", lists of structs as "name" plus "name[].field".
func wireKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("cbor"), ",")
		if jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ","); jsonName != name {
			panic("json and cbor names differ for " + t.Name() + "." + f.Name)
		}
		switch ft := f.Type; {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, wireKeys(ft, prefix+name+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, prefix+name)
			keys = append(keys, wireKeys(ft.Elem(), prefix+name+"[].")...)
		default:
			keys = append(keys, prefix+name)
		}
	}
	return keys
}

func TestDocsListEveryField(t *testing.T) {
	sections, _ := docSections(t)
	want := map[string][]string{}
	doc := reflect.TypeFor[Document]()
	for i := range doc.NumField() {
		f := doc.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("cbor"), ",")
		switch ft := f.Type; {
		case ft.Kind() == reflect.Struct:
			want[name] = wireKeys(ft, "")
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			want[name] = wireKeys(ft.Elem(), "")
		default:
			want[""] = append(want[""], name)
		}
	}
	for section, keys := range want {
		var got []string
		for _, r := range sections[section] {
			got = append(got, r.key)
		}
		slices.Sort(got)
		keys = slices.Sorted(slices.Values(keys))
		if !slices.Equal(got, keys) {
			t.Errorf("section %q documents\n  %q\nbut the type has\n  %q", section, got, keys)
		}
	}
	for section := range sections {
		if _, ok := want[section]; !ok && section != "#operations" {
			t.Errorf("docs have a section %q that is not in the document", section)
		}
	}
	var ops []string
	for _, r := range sections["#operations"] {
		ops = append(ops, r.key)
	}
	slices.Sort(ops)
	var names []string
	for _, op := range Operations() {
		names = append(names, string(op))
	}
	if slices.Sort(names); !slices.Equal(ops, names) {
		t.Errorf("operation names documented %q, defined %q", ops, names)
	}
}

func TestDocsExampleIsTheTestExample(t *testing.T) {
	_, text := docSections(t)
	_, after, ok := strings.Cut(text, "## Example")
	if !ok {
		t.Fatal("no Example section")
	}
	_, block, ok := strings.Cut(after, "```json\n")
	if !ok {
		t.Fatal("no json block in the Example section")
	}
	block, _, _ = strings.Cut(block, "```")
	d, err := DecodeJSON([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustEncode(t, d), mustEncode(t, example(t))) {
		t.Fatal("the docs example differs from testdata/example.json")
	}
}

// The default column of the sections that are single objects (not lists) must show the
// factory value.
func TestDocsDefaultsAreTheFactoryValues(t *testing.T) {
	sections, _ := docSections(t)
	factory := reflect.ValueOf(Default()).Elem()
	checked := 0
	for section, rows := range sections {
		var base reflect.Value
		switch {
		case section == "":
			base = factory
		case section == "#operations":
			continue
		default:
			base = fieldByWireName(factory, section)
			if !base.IsValid() || base.Kind() != reflect.Struct {
				continue
			}
		}
		for _, r := range rows {
			if strings.Contains(r.key, "[]") {
				continue
			}
			v := base
			for _, part := range strings.Split(r.key, ".") {
				v = fieldByWireName(v, part)
			}
			if !v.IsValid() {
				t.Errorf("%s.%s: no such field", section, r.key)
				continue
			}
			got, err := json.Marshal(v.Interface())
			if err != nil {
				t.Fatal(err)
			}
			cell := r.cells[2]
			if cell == "empty" {
				if !v.IsZero() && !(v.Kind() == reflect.Slice && v.Len() == 0) {
					t.Errorf("%s.%s: documented default empty, factory has %s", section, r.key, got)
				}
				checked++
				continue
			}
			var want bytes.Buffer
			if err := json.Compact(&want, []byte(strings.Trim(cell, "`"))); err != nil {
				t.Errorf("%s.%s: default %q is not a JSON value: %v", section, r.key, cell, err)
				continue
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("%s.%s: documented default %s, factory has %s", section, r.key, want.Bytes(), got)
			}
			checked++
		}
	}
	if checked < 90 { // the object sections hold about a hundred fields
		t.Fatalf("only %d defaults checked", checked)
	}
}

func fieldByWireName(v reflect.Value, name string) reflect.Value {
	if v.Kind() != reflect.Struct {
		return reflect.Value{}
	}
	for i := range v.NumField() {
		if tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("cbor"), ","); tag == name {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}
