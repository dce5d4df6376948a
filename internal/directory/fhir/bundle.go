package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/eimis-hub/eimis/internal/directory"
)

// Identifier and code systems of the Annuaire Santé.
const (
	SystemIDNat = "urn:oid:1.2.250.1.71.4.2.1"
	SystemRPPS  = "https://rpps.esante.gouv.fr"
	// SystemRPPSv1 is what the v1 API and older exports used.
	SystemRPPSv1 = "http://rpps.fr"
	// SystemProfession is TRE_G15-ProfessionSante.
	SystemProfession = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
	typeIDNat        = "IDNPS"
)

// Only the fields we map are declared: the resources carry much more, and
// encoding/json ignores the rest, which keeps us tolerant of profile changes.
type bundle struct {
	ResourceType string        `json:"resourceType"`
	Type         string        `json:"type"`
	Total        *int          `json:"total"`
	Link         []bundleLink  `json:"link"`
	Entry        []bundleEntry `json:"entry"`
}

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

type bundleEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Search   *struct {
		Mode string `json:"mode"`
	} `json:"search"`
}

func (b *bundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

type coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type codeableConcept struct {
	Coding []coding `json:"coding"`
	Text   string   `json:"text"`
}

type identifier struct {
	System string           `json:"system"`
	Value  string           `json:"value"`
	Type   *codeableConcept `json:"type"`
}

type reference struct {
	Reference  string      `json:"reference"`
	Identifier *identifier `json:"identifier"`
	Display    string      `json:"display"`
}

type humanName struct {
	Family string   `json:"family"`
	Given  []string `json:"given"`
	Prefix []string `json:"prefix"`
}

type practitionerRes struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id"`
	Identifier   []identifier `json:"identifier"`
	Active       *bool        `json:"active"`
	Name         []humanName  `json:"name"`
}

type roleRes struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id"`
	Active       *bool             `json:"active"`
	Practitioner *reference        `json:"practitioner"`
	Organization *reference        `json:"organization"`
	Code         []codeableConcept `json:"code"`
}

func decodeBundle(body []byte) (*bundle, error) {
	var b bundle
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("decode bundle: %w", err)
	}
	if b.ResourceType != "Bundle" {
		return nil, fmt.Errorf("decode bundle: resourceType is %q, want Bundle", b.ResourceType)
	}
	if b.Type != "" && b.Type != "searchset" {
		return nil, fmt.Errorf("decode bundle: type is %q, want searchset", b.Type)
	}
	return &b, nil
}

type pageResult struct {
	practitioners []directory.Practitioner
	skipped       int
	roles         int
}

// mapBundle turns one page into practitioners. Resources that do not decode
// are counted as skipped rather than failing the page: one odd record must
// not block the directory refresh of everybody else.
func mapBundle(b *bundle) pageResult {
	var res pageResult
	var practs []practitionerRes
	roles := map[string][]roleRes{}
	for _, e := range b.Entry {
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if json.Unmarshal(e.Resource, &head) != nil {
			res.skipped++
			continue
		}
		mode := ""
		if e.Search != nil {
			mode = e.Search.Mode
		}
		switch head.ResourceType {
		case "Practitioner":
			// An included Practitioner (not a match) would be emitted by the
			// page it matches on; emitting it here too would only duplicate.
			if mode != "" && mode != "match" {
				continue
			}
			var p practitionerRes
			if json.Unmarshal(e.Resource, &p) != nil {
				res.skipped++
				continue
			}
			practs = append(practs, p)
		case "PractitionerRole":
			var r roleRes
			if json.Unmarshal(e.Resource, &r) != nil {
				continue
			}
			res.roles++
			if r.Practitioner == nil {
				continue
			}
			if key := refKey(r.Practitioner.Reference, "Practitioner"); key != "" {
				roles[key] = append(roles[key], r)
			}
		}
		// OperationOutcome entries (mode "outcome") carry warnings only.
	}
	for _, p := range practs {
		dp, err := mapPractitioner(p, roles[p.ID])
		if err != nil {
			res.skipped++
			continue
		}
		res.practitioners = append(res.practitioners, dp)
	}
	return res
}

// refKey extracts the logical id from "Practitioner/123", an absolute URL
// ending that way, or a versioned ".../Practitioner/123/_history/2".
func refKey(ref, resourceType string) string {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(strings.TrimSuffix(ref, "/"), "/")
	if len(parts) < 2 || parts[len(parts)-2] != resourceType {
		return ""
	}
	return parts[len(parts)-1]
}

var errNoIDNat = errors.New("no valid idNat")

// mapPractitioner applies the mapping rules documented in the package.
func mapPractitioner(p practitionerRes, roles []roleRes) (directory.Practitioner, error) {
	var idNat, rpps string
	for _, id := range p.Identifier {
		v := strings.TrimSpace(id.Value)
		switch {
		case id.System == SystemIDNat || (id.System == "" && hasTypeCode(id.Type, typeIDNat)):
			if idNat == "" {
				idNat = v
			}
		case id.System == SystemRPPS || id.System == SystemRPPSv1:
			if rpps == "" {
				rpps = v
			}
		}
	}
	kind, local, err := directory.ParseIDNat(idNat)
	if err != nil {
		return directory.Practitioner{}, fmt.Errorf("%w: %w", errNoIDNat, err)
	}
	if kind == directory.KindRPPS {
		// A disagreeing RPPS means the record is corrupt; trusting either
		// side could bind an account to the wrong person.
		if rpps != "" && rpps != local {
			return directory.Practitioner{}, fmt.Errorf("%w: RPPS %q does not match idNat", errNoIDNat, rpps)
		}
		rpps = local
	} else {
		rpps = ""
	}

	out := directory.Practitioner{IDNat: idNat, RPPS: rpps, Active: p.Active == nil || *p.Active}
	if len(p.Name) > 0 {
		n := p.Name[0]
		out.LastName = strings.TrimSpace(n.Family)
		out.FirstName = strings.TrimSpace(strings.Join(n.Given, " "))
		if len(n.Prefix) > 0 {
			out.Civility = civility(strings.TrimSpace(n.Prefix[0]))
		}
	}
	for _, r := range roles {
		if r.Active != nil && !*r.Active {
			continue
		}
		for _, cc := range r.Code {
			for _, c := range cc.Coding {
				if c.System != SystemProfession || c.Code == "" {
					continue
				}
				label := c.Display
				if label == "" {
					label = professionLabels[c.Code]
				}
				out.Professions = appendProfession(out.Professions, directory.Profession{Code: c.Code, Label: label})
			}
		}
		if a, ok := activity(r.Organization); ok {
			out.Activities = appendActivity(out.Activities, a)
		}
	}
	return out, nil
}

func hasTypeCode(cc *codeableConcept, code string) bool {
	if cc == nil {
		return false
	}
	for _, c := range cc.Coding {
		if c.Code == code {
			return true
		}
	}
	return false
}

// civilities turns the short codes found in name.prefix into the labels the
// bulk extract uses, so both sources give the same Civility.
var civilities = map[string]string{
	"DR": "Docteur", "PR": "Professeur", "M": "Monsieur", "MME": "Madame", "MLLE": "Mademoiselle",
}

func civility(prefix string) string {
	if l, ok := civilities[strings.ToUpper(strings.TrimSuffix(prefix, "."))]; ok {
		return l
	}
	return prefix
}

// professionLabels fills in a label when a coding comes without display, so
// DisplayName still shows a profession.
var professionLabels = map[string]string{
	"10": "Médecin", "21": "Pharmacien", "40": "Chirurgien-Dentiste",
	"50": "Sage-Femme", "60": "Infirmier", "70": "Masseur-Kinésithérapeute",
}

func appendProfession(list []directory.Profession, p directory.Profession) []directory.Profession {
	for i, q := range list {
		if q.Code == p.Code {
			if q.Label == "" {
				list[i].Label = p.Label
			}
			return list
		}
	}
	return append(list, p)
}

func activity(org *reference) (directory.Activity, bool) {
	if org == nil {
		return directory.Activity{}, false
	}
	a := directory.Activity{StructureName: strings.TrimSpace(org.Display)}
	a.StructureID = strings.TrimSpace(org.Reference)
	if org.Identifier != nil {
		v := strings.TrimSpace(org.Identifier.Value)
		if a.StructureID == "" {
			a.StructureID = v
		}
		if strings.Contains(strings.ToLower(org.Identifier.System), "finess") {
			a.FINESS = v
		}
	}
	return a, a != directory.Activity{}
}

func appendActivity(list []directory.Activity, a directory.Activity) []directory.Activity {
	for _, b := range list {
		if b == a {
			return list
		}
	}
	return append(list, a)
}
