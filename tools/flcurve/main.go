// Command flcurve measures the FL demo's accuracy against the privacy
// budget: the demo's job (logistic regression on Adult split by workclass
// over three nodes, 10 FedAvg rounds, DP-SGD in each node), its noise
// multiplier set so that the whole job costs each node ε ∈ {1, 2, 4, 8} at
// δ = 1e-5, and without DP; each setting trained five times in process
// (package fl's round arithmetic, secure sums by secagg.Local), scored on
// the held-out fifth. It prints a Markdown table and draws the plot:
//
//	go run ./tools/flcurve -png docs/fl-accuracy-epsilon.png
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/airlock-dev/airlock/internal/demo"
	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/fedjob"
	"github.com/airlock-dev/airlock/internal/fl"
)

const delta = 1e-5

type point struct {
	eps            float64 // 0: no DP
	noise, spent   float64
	median, lo, hi float64
}

func main() {
	out := flag.String("png", "", "write the plot here")
	reps := flag.Int("reps", 5, "runs per setting")
	flag.Parse()
	dir, err := os.MkdirTemp("", "flcurve")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d := demo.FLDemo
	if err := demo.InitJob(dir, d, 0); err != nil {
		log.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, d.Job+".yaml"))
	j, err := fedjob.Parse(b)
	if err != nil {
		log.Fatal(err)
	}
	plan := j.Plan()
	schema := j.Train.Schema()
	var parts []fl.Data
	for _, m := range d.Members {
		parts = append(parts, read(filepath.Join(dir, m.Name, "data", "census.csv"), schema))
	}
	test := read(filepath.Join(dir, "holdout.csv"), schema)
	rounds := j.Train.Rounds
	var pts []point
	for _, eps := range []float64{1, 2, 4, 8, 0} {
		p := plan
		pt := point{eps: eps}
		if eps == 0 {
			p.Unit = fl.NoDP
		} else {
			p.Noise = fl.NoiseFor(dp.RhoForEpsDelta(eps, delta)/float64(rounds)-p.MetricRho(), p.Local.Epochs, p.Model.Size(), 0)
			pt.noise = p.Noise
			pt.spent = dp.EpsilonForRho(p.RhoPerRound()*float64(rounds), delta)
		}
		var accs []float64
		for range *reps {
			w := p.Model.Init(j.Train.Seed)
			for range rounds {
				if w, _, err = p.RoundLocal(w, parts, dp.NewSampler(nil)); err != nil {
					log.Fatal(err)
				}
			}
			accs = append(accs, p.Model.Score(w, test))
		}
		slices.Sort(accs)
		pt.median, pt.lo, pt.hi = accs[len(accs)/2], accs[0], accs[len(accs)-1]
		pts = append(pts, pt)
	}
	fmt.Printf("| ε per node (δ = 1e-5) | noise multiplier | ε accounted per node | held-out accuracy, median of %d | min – max |\n|---|---|---|---|---|\n", *reps)
	for _, p := range pts {
		if p.eps == 0 {
			fmt.Printf("| no DP | – | – | %.4f | %.4f – %.4f |\n", p.median, p.lo, p.hi)
			continue
		}
		fmt.Printf("| %g | %.2f | %.3f | %.4f | %.4f – %.4f |\n", p.eps, p.noise, p.spent, p.median, p.lo, p.hi)
	}
	if *out != "" {
		if err := plot(*out, pts); err != nil {
			log.Fatal(err)
		}
	}
}

func read(path string, s fl.Schema) fl.Data {
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		log.Fatal(err)
	}
	var d fl.Data
	row := map[string]string{}
	for _, rec := range recs[1:] {
		for i, h := range recs[0] {
			row[h] = rec[i]
		}
		x, y := s.Encode(row)
		d.X, d.Y = append(d.X, x), append(d.Y, y)
	}
	return d
}

// plot draws accuracy (y) against ε on a log scale (x), the no-DP
// accuracy as a dashed line, each setting's range as a bar.
func plot(path string, pts []point) error {
	const w, h, left, right, top, bottom = 640, 400, 70, 30, 40, 60
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fill(img, img.Bounds(), color.White)
	lo, hi := 0.78, 0.83
	for _, p := range pts {
		lo, hi = math.Min(lo, math.Floor(p.lo*100)/100), math.Max(hi, math.Ceil(p.hi*100)/100)
	}
	x := func(eps float64) int { return left + int(math.Log2(eps)/3*float64(w-left-right)) }
	y := func(a float64) int { return top + int((hi-a)/(hi-lo)*float64(h-top-bottom)) }
	black, grey, blue := color.Black, color.RGBA{180, 180, 180, 255}, color.RGBA{30, 90, 200, 255}
	for a := lo; a <= hi+1e-9; a += 0.01 {
		line(img, left, y(a), w-right, y(a), grey, false)
		text(img, left-40, y(a)+4, fmt.Sprintf("%.2f", a), black)
	}
	line(img, left, top, left, h-bottom, black, false)
	line(img, left, h-bottom, w-right, h-bottom, black, false)
	for _, e := range []float64{1, 2, 4, 8} {
		line(img, x(e), h-bottom, x(e), h-bottom+5, black, false)
		text(img, x(e)-3, h-bottom+18, fmt.Sprint(e), black)
	}
	var prev *point
	for i := range pts {
		p := &pts[i]
		if p.eps == 0 {
			line(img, left, y(p.median), w-right, y(p.median), blue, true)
			text(img, w-right-230, y(p.median)+16, fmt.Sprintf("no DP (FedAvg by rows): %.3f", p.median), blue)
			continue
		}
		line(img, x(p.eps), y(p.lo), x(p.eps), y(p.hi), blue, false)
		fill(img, image.Rect(x(p.eps)-3, y(p.median)-3, x(p.eps)+4, y(p.median)+4), blue)
		if prev != nil {
			line(img, x(prev.eps), y(prev.median), x(p.eps), y(p.median), blue, false)
		}
		prev = p
	}
	text(img, left, 20, "FL demo (Adult, 3 nodes, 10 rounds, DP-SGD): held-out accuracy", black)
	text(img, w/2-140, h-20, "epsilon per node (delta = 1e-5), log scale", black)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	for py := r.Min.Y; py < r.Max.Y; py++ {
		for px := r.Min.X; px < r.Max.X; px++ {
			img.Set(px, py, c)
		}
	}
}

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color, dashed bool) {
	n := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= n; i++ {
		if dashed && (i/6)%2 == 1 {
			continue
		}
		px, py := x0+(x1-x0)*i/n, y0+(y1-y0)*i/n
		img.Set(px, py, c)
		img.Set(px, py+1, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
