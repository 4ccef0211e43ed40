package fl

import (
	"encoding/csv"
	"math"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/secagg"
)

// adult reads the Adult census data (the anonymisation tests' copy).
func adult(t *testing.T) (Schema, []map[string]string) {
	f, err := os.Open("../anon/testdata/adult/adult.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	head := recs[0]
	var rows []map[string]string
	values := map[string][]string{}
	var sum, sum2 float64
	for _, rec := range recs[1:] {
		row := map[string]string{}
		for i, h := range head {
			row[h] = rec[i]
			if h != "age" && h != "salary-class" && !slices.Contains(values[h], rec[i]) {
				values[h] = append(values[h], rec[i])
			}
		}
		var age float64
		for _, c := range row["age"] {
			age = age*10 + float64(c-'0')
		}
		sum, sum2 = sum+age, sum2+age*age
		rows = append(rows, row)
	}
	n := float64(len(rows))
	s := Schema{Numeric: []Numeric{{Name: "age", Mean: sum / n, Std: math.Sqrt(sum2/n - (sum/n)*(sum/n))}}, Label: "salary-class", Positive: ">50K"}
	for _, h := range head {
		if h != "age" && h != "salary-class" {
			vs := values[h]
			slices.Sort(vs)
			s.Categorical = append(s.Categorical, Categorical{Name: h, Values: vs})
		}
	}
	return s, rows
}

func encode(t *testing.T, s Schema, rows []map[string]string) Data {
	var d Data
	for _, r := range rows {
		x, y, err := s.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		d.X, d.Y = append(d.X, x), append(d.Y, y)
	}
	return d
}

// TestFederatedMatchesCentralised: three nodes with disjoint, non-IID
// slices of Adult (split by workclass), trained by 20 FedAvg rounds whose
// aggregate is a secure sum, reach the accuracy of training on the union
// within 1 point, on the same held-out 20%.
func TestFederatedMatchesCentralised(t *testing.T) {
	s, rows := adult(t)
	r := mrand.New(mrand.NewPCG(42, 42))
	r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	cut := len(rows) * 4 / 5
	train, test := rows[:cut], encode(t, s, rows[cut:])
	var slices3 [3][]map[string]string
	for _, row := range train {
		switch w := row["workclass"]; {
		case w == "Private":
			slices3[0] = append(slices3[0], row)
		case strings.HasPrefix(w, "Self-emp"):
			slices3[1] = append(slices3[1], row)
		default:
			slices3[2] = append(slices3[2], row)
		}
	}
	parts := make([]Data, 3)
	for i := range parts {
		parts[i] = encode(t, s, slices3[i])
	}
	dim := s.Dim() + 1
	central := Train(make(Weights, dim), encode(t, s, train), Local{Epochs: 10, LR: 0.1, Batch: 64, Seed: 1})
	q := secagg.Quantizer{Clip: 1e5, Scale: 1e3}
	global := make(Weights, dim)
	var err error
	for round := range 20 {
		if global, err = Round(global, parts, Local{Epochs: 1, LR: 0.1, Batch: 64, Seed: uint64(round * 10)}, q); err != nil {
			t.Fatal(err)
		}
	}
	ca, fa := central.Accuracy(test), global.Accuracy(test)
	t.Logf("accuracy: centralised %.4f, federated %.4f (slices %d/%d/%d rows)", ca, fa, len(parts[0].X), len(parts[1].X), len(parts[2].X))
	if ca < 0.8 {
		t.Errorf("centralised accuracy %.4f: the model did not learn", ca)
	}
	if math.Abs(ca-fa) > 0.01 {
		t.Errorf("federated %.4f vs centralised %.4f: more than 1 point apart", fa, ca)
	}
}
