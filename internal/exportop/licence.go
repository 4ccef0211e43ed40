package exportop

import (
	"encoding/json"
	"slices"
	"time"
)

// odrl renders a release's licence as an ODRL 2.2 agreement (default deny:
// only the permitted use; onward transfer prohibited unless granted), with
// the DUO codes as a purpose constraint.
func odrl(r Record, l Licence) json.RawMessage {
	constraints := []map[string]any{
		{"leftOperand": "dateTime", "operator": "lt", "rightOperand": map[string]any{"@value": l.Expires.UTC().Format(time.RFC3339), "@type": "xsd:dateTime"}},
		{"leftOperand": "purpose", "operator": "eq", "rightOperand": r.Purpose},
	}
	if len(l.DUO) > 0 {
		constraints = append(constraints, map[string]any{"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": l.DUO})
	}
	permission := []map[string]any{{"action": "use", "target": "urn:airlock:release:" + r.ID, "constraint": constraints}}
	if l.Attribution != "" {
		permission[0]["duty"] = []map[string]any{{"action": "attribute", "attributedParty": l.Attribution}}
	}
	policy := map[string]any{
		"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Agreement", "uid": "urn:airlock:licence:" + r.ID,
		"assigner": "urn:airlock:org:" + r.Owner, "assignee": "urn:airlock:org:" + r.Destination.Org,
		"permission": permission,
		"obligation": []map[string]any{{"action": "inform", "assigner": "urn:airlock:org:" + r.Owner, "comment": "audit rights: the owner may audit the recipient's use"}},
	}
	if l.OnwardTransfer {
		permission = append(permission, map[string]any{"action": "distribute", "target": "urn:airlock:release:" + r.ID})
		policy["permission"] = permission
	} else {
		policy["prohibition"] = []map[string]any{{"action": "distribute", "target": "urn:airlock:release:" + r.ID}}
	}
	b, _ := json.Marshal(policy)
	return b
}

// openLineage renders the release as an OpenLineage 2-0-2 RunEvent with
// column lineage (quasi-identifiers masked by generalisation) and a
// custom privacy facet.
func openLineage(r Record) json.RawMessage {
	const producer = "https://github.com/airlock-dev/airlock"
	fields := map[string]any{}
	for _, col := range r.Columns {
		masking, subtype := false, "IDENTITY"
		if r.Method == "synthetic" || slices.Contains(r.QuasiIdentifiers, col) {
			masking, subtype = true, "TRANSFORMATION"
		}
		fields[col] = map[string]any{"inputFields": []map[string]any{{
			"namespace": "airlock://" + r.Node, "name": r.Dataset, "field": col,
			"transformations": []map[string]any{{"type": "DIRECT", "subtype": subtype, "description": r.Method, "masking": masking}},
		}}}
	}
	event := map[string]any{
		"eventType": "COMPLETE", "eventTime": r.Issued.Format(time.RFC3339Nano), "producer": producer,
		"schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
		"run": map[string]any{"runId": uuidOf(r.ID), "facets": map[string]any{"airlock_privacy": map[string]any{
			"_producer": producer, "_schemaURL": producer + "/docs/export.md#privacy-facet",
			"method": r.Method, "params": r.Params, "levels": r.Levels, "risk": r.Risk,
		}}},
		"job":    map[string]any{"namespace": "airlock://" + r.Node, "name": "export." + r.Dataset},
		"inputs": []map[string]any{{"namespace": "airlock://" + r.Node, "name": r.Dataset}},
		"outputs": []map[string]any{{"namespace": "airlock://" + r.Destination.Org, "name": r.ID, "facets": map[string]any{
			"columnLineage": map[string]any{"_producer": producer, "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json", "fields": fields},
		}}},
	}
	b, _ := json.Marshal(event)
	return b
}

// uuidOf derives a stable UUID-shaped run id from a release id.
func uuidOf(id string) string {
	h := sha256Hex(id)
	return h[0:8] + "-" + h[8:12] + "-5" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}
