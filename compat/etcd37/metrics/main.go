// Command metrics reads a server's /metrics with Prometheus's own text-format parser
// (github.com/prometheus/common/expfmt, as Prometheus's Go libraries read a scrape) and prints
// one line per metric family: its name, its type, and the label names its series carry.
// A body the parser refuses is an error (exit 1).
//
// Usage: metrics URL   (e.g. http://127.0.0.1:2379/metrics)
package main

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: metrics URL")
		os.Exit(2)
	}
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "metrics: status", resp.Status)
		os.Exit(1)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		fmt.Fprintln(os.Stderr, "metrics: the text-format parser refused the body:", err)
		os.Exit(1)
	}
	names := make([]string, 0, len(families))
	for name := range families {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		family := families[name]
		labels := map[string]bool{}
		for _, metric := range family.GetMetric() {
			for _, pair := range metric.GetLabel() {
				labels[pair.GetName()] = true
			}
		}
		labelNames := make([]string, 0, len(labels))
		for label := range labels {
			labelNames = append(labelNames, label)
		}
		sort.Strings(labelNames)
		fmt.Printf("%s %s %s\n", name, family.GetType(), strings.Join(labelNames, ","))
	}
}
