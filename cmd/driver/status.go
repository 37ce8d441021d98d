package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/ui"
)

// serveUI serves the coordinator's web UI at addr. On loopback the pages
// and reads are open; beyond it they ask for the cluster secret (or a
// client certificate of --tls-ca), which --insecure lacks. Stopping a job
// through the API always needs it.
func serveUI(coord *cluster.Coordinator, addr string, secret cluster.Secret, log *slog.Logger) (*ui.Server, error) {
	a, err := ui.NormalizeAddr(addr)
	if err != nil {
		return nil, usageError{fmt.Errorf("serve: --ui: %w", err)}
	}
	loop := ui.IsLoopback(a)
	if !loop && secret.IsInsecure() {
		return nil, usageError{fmt.Errorf("serve: --ui=%s binds beyond loopback, where the UI asks for the cluster secret, and --insecure has none: give --secret-file, or bind the UI to 127.0.0.1", addr)}
	}
	var tlsCfg = secret.UITLS()
	if loop {
		tlsCfg = nil
	}
	opts := ui.Options{Secret: secret.UIToken(), OpenReads: loop, ClientCerts: tlsCfg != nil && tlsCfg.ClientCAs != nil}
	srv, err := ui.ListenTLS(a, coord.UIHandler(opts), tlsCfg)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	log.Info("web UI", slog.String("url", scheme+"://"+srv.Addr()+"/"), slog.String("metrics", scheme+"://"+srv.Addr()+"/metrics"))
	return srv, nil
}

// apiClient reads a UI's JSON API.
type apiClient struct {
	base  string // scheme://host:port
	token string
	http  *http.Client
}

func newAPIClient(addr string, secret cluster.Secret) (*apiClient, error) {
	base := strings.TrimRight(addr, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		a, err := ui.NormalizeAddr(base)
		if err != nil {
			return nil, usageError{fmt.Errorf("status: --ui: %w", err)}
		}
		base = "http://" + a
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = secret.UIClientTLS()
	return &apiClient{base: base, token: secret.UIToken(), http: &http.Client{Timeout: 15 * time.Second, Transport: tr}}, nil
}

func (c *apiClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("status: %w (is `driver serve --ui` listening there?)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e ui.Error
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return fmt.Errorf("status: GET %s: %s: %s", path, resp.Status, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

// status prints a job's figures and its last batches from the API; with
// watch it redraws them every interval until the job ends or ctx is done.
func status(ctx context.Context, c *apiClient, id string, n int, watch bool, interval time.Duration, out io.Writer) error {
	for {
		var j ui.Job
		if err := c.get(ctx, "/api/v1/jobs/"+id, &j); err != nil {
			if watch && ctx.Err() != nil {
				return nil
			}
			return err
		}
		var page ui.BatchPage
		live := j.State == "running" || j.State == "stopping" || j.State == "created" || j.State == "restarting"
		if live {
			// A job that is starting or stopping may have no API for a
			// moment: its summary line still shows.
			if err := c.get(ctx, fmt.Sprintf("/api/v1/jobs/%s/batches?limit=%d", id, n), &page); err != nil {
				if watch && ctx.Err() != nil {
					return nil
				}
				if !watch && j.State == "running" {
					return err
				}
			}
		}
		var b strings.Builder
		if watch {
			b.WriteString(clearScreen)
		}
		writeStatus(&b, j, page)
		if _, err := io.WriteString(out, b.String()); err != nil {
			return err
		}
		if !watch || !live {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// writeStatus draws a job's summary line and its batches table.
func writeStatus(w io.Writer, j ui.Job, page ui.BatchPage) {
	fmt.Fprintf(w, "job %s (%s): %s, up %s, batches %d done %d failed, %d pending, %d records in, %d task failures\n",
		j.ID, j.Name, j.State, (time.Duration(j.UptimeMs) * time.Millisecond).Round(time.Second), j.BatchesDone, j.BatchesFailed,
		j.PendingBatches, j.InputRecords, j.TaskFailures)
	if j.Error != "" {
		fmt.Fprintf(w, "error: %s\n", j.Error)
	}
	for _, in := range j.LastInputs {
		if len(in.Attrs) == 0 {
			continue
		}
		fmt.Fprintf(w, "input %s:", in.Stream)
		for _, k := range []string{"offsets", "lag", "rate"} {
			if v, ok := in.Attrs[k]; ok {
				fmt.Fprintf(w, " %s=%s", k, v)
			}
		}
		fmt.Fprintln(w)
		if len(in.Partitions) > 0 {
			fmt.Fprint(w, "  lag by partition:")
			for _, p := range in.Partitions {
				fmt.Fprintf(w, " %s/%d=%d", p.Topic, p.Partition, p.Lag)
			}
			fmt.Fprintln(w)
		}
	}
	if c := j.Checkpoint; c != nil {
		fmt.Fprintf(w, "checkpoint: generation %d", c.Generation)
		if c.LastBatchTime != nil {
			fmt.Fprintf(w, ", batch %s", c.LastBatchTime.UTC().Format("15:04:05.000"))
		}
		fmt.Fprintf(w, ", age %s, metadata %d B", fmtMs(float64(c.AgeMs)), c.MetadataBytes)
		if s := c.Snapshot; s != nil {
			fmt.Fprintf(w, "; snapshot of batch %s, age %s, %d B", s.BatchTime.UTC().Format("15:04:05.000"), fmtMs(float64(s.AgeMs)), s.Bytes)
		}
		fmt.Fprintln(w)
	}
	if len(page.Batches) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "BATCH\tRECORDS\tSCHED DELAY\tPROCESSING\tTOTAL DELAY\tJOBS\tSTATUS\t")
	for _, b := range page.Batches {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t\n", b.Time.UTC().Format("15:04:05.000"), b.InputRecords,
			fmtMs(b.SchedulingDelayMs), fmtMs(b.ProcessingTimeMs), fmtMs(b.TotalDelayMs), b.Jobs, b.Status)
	}
	tw.Flush()
}

func fmtMs(ms float64) string {
	return (time.Duration(ms * float64(time.Millisecond))).Round(100 * time.Microsecond).String()
}
