// Package jsonschema checks a JSON value against the subset of JSON Schema
// (2020-12) Airlock's own documents use: $ref (local), type (one or
// several), enum, properties, required, additionalProperties (false or a
// schema), items and pattern. Tests hold the OpenAPI document to real
// responses and the workspace schemas to real files with it.
package jsonschema

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
)

// Validator resolves $refs against a root document.
type Validator struct{ Root map[string]any }

// Resolve follows $ref until s is a schema of its own.
func (v Validator) Resolve(s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		var cur any = v.Root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		s = cur.(map[string]any)
	}
}

// TypeOf is a decoded JSON value's schema type.
func TypeOf(x any) string {
	switch y := x.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if y == math.Trunc(y) {
			return "integer"
		}
		return "number"
	case int, int64:
		return "integer"
	case []any:
		return "array"
	}
	return "object"
}

// Check returns every way x (decoded JSON) breaks schema s, at path at.
func (v Validator) Check(s map[string]any, x any, at string) []string {
	s = v.Resolve(s)
	var errs []string
	if t, ok := s["type"]; ok {
		var types []string
		switch tt := t.(type) {
		case string:
			types = []string{tt}
		case []any:
			for _, e := range tt {
				types = append(types, e.(string))
			}
		}
		got := TypeOf(x)
		if !slices.Contains(types, got) && !(got == "integer" && slices.Contains(types, "number")) {
			return []string{fmt.Sprintf("%s is %s, want %v", at, got, types)}
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, x) {
		errs = append(errs, fmt.Sprintf("%s = %v is not one of %v", at, x, enum))
	}
	if p, ok := s["pattern"].(string); ok {
		if str, isStr := x.(string); isStr && !regexp.MustCompile(p).MatchString(str) {
			errs = append(errs, fmt.Sprintf("%s = %q does not match %s", at, str, p))
		}
	}
	switch y := x.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		required, _ := s["required"].([]any)
		for _, r := range required {
			if _, ok := y[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s lacks required %s", at, r))
			}
		}
		for k, val := range y {
			if ps, ok := props[k]; ok {
				errs = append(errs, v.Check(ps.(map[string]any), val, at+"."+k)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					errs = append(errs, fmt.Sprintf("%s.%s is not documented", at, k))
				}
			case map[string]any:
				errs = append(errs, v.Check(ap, val, at+"."+k)...)
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range y {
				errs = append(errs, v.Check(items, e, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	return errs
}
