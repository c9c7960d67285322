// Package opsserver serves the operational HTTP endpoints of every binary on a
// port of their own: /healthz (the process lives), /readyz (its dependencies
// answer) and /metrics (Prometheus).
package opsserver

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// draining is set once the process has been told to stop: from then on
// /readyz fails, so that load balancers stop sending it new connections
// while it still serves (see servicemain's --shutdown-delay).
var draining atomic.Bool

// Drain makes /readyz fail from now on.
func Drain() { draining.Store(true) }

// Server is the ops HTTP server.
type Server struct {
	http *http.Server
	ln   net.Listener
	mux  *http.ServeMux
}

// Listen binds addr and prepares the handlers; ready is called for /readyz.
func Listen(addr string, reg *prometheus.Registry, ready func(context.Context) error, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
			return
		}
		if err := ready(r.Context()); err != nil {
			log.Warn("not ready", "err", err)
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return &Server{ln: ln, mux: mux, http: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// EnablePprof serves Go's profiles under /debug/pprof/ (off by default:
// the ops port is cluster-internal, but profiles show much).
func (s *Server) EnablePprof() {
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }
