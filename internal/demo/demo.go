// Package demo writes Airlock's demo workspace: a hospital's visits and a
// bank's card transactions (synthetic, deterministic), with manifests,
// principals, agreements and Cedar policies that exercise purposes,
// regions, validity windows, masks and both analysis rules.
package demo

import (
	"bufio"
	"embed"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

//go:embed workspace
var files embed.FS

// Sizes of the demo data.
const (
	VisitRows       = 120_000
	Patients        = 30_000
	TransactionRows = 220_000
	Accounts        = 20_000
	seed            = 20260101
)

// Init writes a complete demo workspace into dir. It refuses a non-empty
// directory that is not already a demo workspace; an existing demo
// workspace is regenerated in place (its .airlock state is kept).
func Init(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "datasets", "visits.yaml")); err != nil {
			return fmt.Errorf("%s is not empty and is not a demo workspace", dir)
		}
	}
	err = copyTree(files, "workspace", dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "data", "visits.csv"), func(w io.Writer) error { return WriteVisitsCSV(w, VisitRows, Patients, seed) }); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "data", "transactions.csv"), func(w io.Writer) error {
		return WriteTransactionsCSV(w, TransactionRows, Accounts, seed)
	})
}

func writeFile(path string, gen func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := gen(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var (
	firstNames = []string{"Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Ava", "Elijah", "Sophia", "Lucas", "Isla", "Mateo", "Mia", "Levi", "Freya", "Arjun", "Chloe", "Hugo", "Zara", "Omar", "Ines", "Jonas", "Maja", "Luca", "Nora", "Aisha", "Finn", "Lena", "Ravi", "Sofia"}
	lastNames  = []string{"Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Wright", "Khan", "Evans", "Thomas", "Roberts", "Müller", "Schmidt", "de Vries", "Jansen", "Rossi", "García", "Novak", "Kowalski", "O'Brien", "Murphy", "Nguyen", "Okafor", "Larsen", "Dubois", "Silva", "Ahmed"}
	// ICD-10 codes with rough outpatient frequencies.
	diagnoses = []struct {
		code string
		w    float64
	}{
		{"I10", 14}, {"E11.9", 9}, {"J06.9", 8}, {"M54.5", 7}, {"E78.5", 6}, {"J45.909", 5}, {"F41.1", 4.5}, {"F32.9", 4.5},
		{"K21.9", 4}, {"N39.0", 3.5}, {"I25.10", 3}, {"E66.9", 3}, {"M17.11", 2.5}, {"R51", 2.5}, {"J18.9", 2}, {"I48.91", 2},
		{"L40.0", 1.5}, {"K58.9", 1.5}, {"G43.909", 1.5}, {"H40.9", 1.2}, {"N18.3", 1.2}, {"C50.911", 1}, {"C61", 0.9}, {"I50.9", 0.9},
		{"J44.9", 0.9}, {"E03.9", 0.8}, {"D64.9", 0.8}, {"M81.0", 0.7}, {"G47.33", 0.7}, {"K57.30", 0.6}, {"A09", 0.6}, {"B20", 0.3},
		{"C34.90", 0.3}, {"G35", 0.2}, {"G20", 0.2}, {"E10.9", 0.5}, {"O80", 0.6}, {"S72.001A", 0.2}, {"Z34.90", 0.4}, {"Q90.9", 0.05},
	}
	hospitals = []struct{ name, region string }{
		{"St Mary North", "north"}, {"St Mary Riverside", "north"}, {"Northfield General", "north"},
		{"St Mary South", "south"}, {"Harbour Clinic", "south"}, {"Southgate Infirmary", "south"},
		{"St Mary East", "east"}, {"Eastwood Medical", "east"}, {"Moorside Hospital", "east"},
		{"St Mary West", "west"}, {"Westbrook Hospital", "west"}, {"Valley Community", "west"},
	}
	regions   = []string{"north", "south", "east", "west"}
	merchants = func() []string {
		a := []string{"Tesco", "Aldi", "Lidl", "Rewe", "Carrefour", "Shell", "BP", "Amazon", "Zalando", "IKEA", "MediaMarkt", "Apple", "Spotify", "Netflix", "Uber", "Bolt", "Ryanair", "KLM", "Booking.com", "Airbnb", "Starbucks", "McDonald's", "Decathlon", "H&M", "Zara", "Primark", "Boots", "DM", "Rossmann", "Deutsche Bahn"}
		var out []string
		for i := 0; i < 200; i++ {
			out = append(out, fmt.Sprintf("%s #%03d", a[i%len(a)], i/len(a)+1))
		}
		return out
	}()
	mccs      = []string{"5411", "5541", "5942", "5732", "5812", "5814", "4121", "4511", "7011", "5651", "5912", "5999", "4829", "6011", "7995"}
	countries = []struct {
		code string
		w    float64
	}{{"DE", 40}, {"NL", 12}, {"FR", 10}, {"GB", 8}, {"ES", 6}, {"IT", 5}, {"PL", 4}, {"AT", 4}, {"BE", 3}, {"US", 3}, {"CH", 2}, {"SE", 1.5}, {"NG", 0.5}, {"RU", 0.5}, {"CN", 0.5}}
)

func weighted[T any](r *rand.Rand, items []T, weight func(T) float64) T {
	total := 0.0
	for _, it := range items {
		total += weight(it)
	}
	x := r.Float64() * total
	for _, it := range items {
		x -= weight(it)
		if x < 0 {
			return it
		}
	}
	return items[len(items)-1]
}

type patient struct {
	id, name, ssn, birth, sex, zip, region string
	hospitals                              []int
	diags                                  []string
}

// WriteVisitsCSV streams rows visits of the given number of patients.
// Visits per patient are skewed (a few patients have dozens of visits).
func WriteVisitsCSV(w io.Writer, rows, patients int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 1))
	ps := make([]patient, patients)
	for i := range ps {
		reg := r.IntN(len(regions))
		p := patient{
			id:     fmt.Sprintf("P%07d", i+1),
			name:   firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))],
			ssn:    fmt.Sprintf("%03d-%02d-%04d", 100+r.IntN(800), 1+r.IntN(98), 1+r.IntN(9998)),
			birth:  time.Date(1930+r.IntN(80), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC).Format("2006-01-02"),
			sex:    []string{"F", "M"}[r.IntN(2)],
			zip:    fmt.Sprintf("%d%04d", 1+reg*2+r.IntN(2), r.IntN(75)*100+r.IntN(3)),
			region: regions[reg],
		}
		for h := range hospitals {
			if hospitals[h].region == p.region {
				p.hospitals = append(p.hospitals, h)
			}
		}
		for k := 0; k < 1+r.IntN(3); k++ {
			p.diags = append(p.diags, weighted(r, diagnoses, func(d struct {
				code string
				w    float64
			}) float64 {
				return d.w
			}).code)
		}
		ps[i] = p
	}
	// Zipf-like patient choice: heavy users.
	zipf := rand.NewZipf(r, 1.15, 20, uint64(patients-1))
	if _, err := io.WriteString(w, "patient_id,name,ssn,birth_date,sex,zip,diagnosis,hospital,region,visit_date,cost\n"); err != nil {
		return err
	}
	start := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < rows; i++ {
		var p *patient
		if i < patients {
			p = &ps[i] // everyone visits at least once
		} else {
			p = &ps[(zipf.Uint64()*7919)%uint64(patients)]
		}
		h := hospitals[p.hospitals[r.IntN(len(p.hospitals))]]
		diag := p.diags[r.IntN(len(p.diags))]
		day := start.AddDate(0, 0, r.IntN(1095)).Format("2006-01-02")
		cost := math.Min(50000, math.Max(20, math.Exp(5.5+1.1*r.NormFloat64())))
		if _, err := fmt.Fprintf(w, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%.2f\n", p.id, csvQuote(p.name), p.ssn, p.birth, p.sex, p.zip, diag, h.name, h.region, day, cost); err != nil {
			return err
		}
	}
	return nil
}

func csvQuote(s string) string {
	if strings.ContainsAny(s, ",\"\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// WriteTransactionsCSV streams rows card transactions of the given number
// of accounts. Fraud (~0.5%) concentrates in some countries, MCCs and
// large amounts.
func WriteTransactionsCSV(w io.Writer, rows, accounts int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 2))
	type account struct{ id, name, iban string }
	as := make([]account, accounts)
	for i := range as {
		as[i] = account{
			id:   fmt.Sprintf("A%07d", i+1),
			name: firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))],
			iban: fmt.Sprintf("DE%02d%08d%010d", 10+r.IntN(89), 10000000+r.IntN(89999999), r.Int64N(9999999999)),
		}
	}
	zipf := rand.NewZipf(r, 1.1, 30, uint64(accounts-1))
	if _, err := io.WriteString(w, "account_id,customer_name,iban,merchant,mcc,country,ts,day,amount,is_fraud\n"); err != nil {
		return err
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < rows; i++ {
		var a account
		if i < accounts {
			a = as[i]
		} else {
			a = as[(zipf.Uint64()*104729)%uint64(accounts)]
		}
		m := r.IntN(len(merchants))
		mcc := mccs[m%len(mccs)]
		c := weighted(r, countries, func(c struct {
			code string
			w    float64
		}) float64 {
			return c.w
		}).code
		at := start.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour)))).Truncate(time.Second)
		ts, day := at.Format("2006-01-02 15:04:05"), at.Format("2006-01-02")
		amount := math.Min(20000, math.Max(0.5, math.Exp(3.2+1.2*r.NormFloat64())))
		p := 0.002
		if c == "NG" || c == "RU" || c == "CN" {
			p += 0.08
		}
		if mcc == "7995" || mcc == "4829" {
			p += 0.03
		}
		if amount > 2000 {
			p += 0.02
		}
		fraud := r.Float64() < p
		if _, err := fmt.Fprintf(w, "%s,%s,%s,%s,%s,%s,%s,%s,%.2f,%t\n", a.id, csvQuote(a.name), a.iban, csvQuote(merchants[m]), mcc, c, ts, day, amount, fraud); err != nil {
			return err
		}
	}
	return nil
}
