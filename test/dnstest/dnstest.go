// Package dnstest is a tiny authoritative DNS server on loopback for tests:
// TXT, MX, A and AAAA records from a map, NXDOMAIN for everything else. It
// never forwards a query anywhere.
package dnstest

import (
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Server answers from its records.
type Server struct {
	Addr string // host:port, UDP and TCP

	mu      sync.Mutex
	records map[string][]dns.RR
	drop    []string // name suffixes whose queries get no answer
	soa     []*dns.SOA
	queries int
	udp     *dns.Server
	tcp     *dns.Server
}

// Start serves on a random loopback port.
func Start() (*Server, error) {
	pc, ln, err := listenUDPAndTCP()
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: pc.LocalAddr().String(), records: map[string][]dns.RR{}}
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	return s, nil
}

// listenUDPAndTCP binds one port for both UDP and TCP. The kernel picks a
// free UDP port, which another process may hold for TCP (tests run in
// parallel), so a few ports are tried.
func listenUDPAndTCP() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, lastErr
}

// Close stops the server.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

func (s *Server) add(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(rr.Header().Name)
	s.records[name] = append(s.records[name], rr)
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: t, Class: dns.ClassINET, Ttl: 60}
}

// TXT adds a TXT record (long values are split into 255-byte strings).
func (s *Server) TXT(name, value string) {
	var parts []string
	for len(value) > 255 {
		parts, value = append(parts, value[:255]), value[255:]
	}
	s.add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: append(parts, value)})
}

// MX adds an MX record.
func (s *Server) MX(name, host string, pref uint16) {
	s.add(&dns.MX{Hdr: hdr(name, dns.TypeMX), Mx: dns.Fqdn(host), Preference: pref})
}

// A adds an A (or AAAA) record.
func (s *Server) A(name, ip string) {
	addr := net.ParseIP(ip)
	if addr.To4() != nil {
		s.add(&dns.A{Hdr: hdr(name, dns.TypeA), A: addr.To4()})
		return
	}
	s.add(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: addr})
}

// SOA makes the server authoritative for zone: NXDOMAIN and no-data
// answers for names under it carry its SOA, whose MINIMUM (and TTL) is how
// long resolvers may cache them (RFC 2308 5).
func (s *Server) SOA(zone string, minimum uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.soa = append(s.soa, &dns.SOA{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: minimum},
		Ns: "ns." + dns.Fqdn(zone), Mbox: "hostmaster." + dns.Fqdn(zone), Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: minimum})
}

// Drop makes the server read and never answer queries for names under
// suffix ("" or "." for every name): a resolver that drops packets.
func (s *Server) Drop(suffix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = append(s.drop, strings.ToLower(dns.Fqdn(suffix)))
}

// Queries returns how many queries the server has read.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func (s *Server) dropped(name string) bool {
	for _, suffix := range s.drop {
		if suffix == "." || dns.IsSubDomain(suffix, name) {
			return true
		}
	}
	return false
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	for _, q := range req.Question {
		if s.dropped(strings.ToLower(q.Name)) {
			return
		}
		rrs, known := s.records[strings.ToLower(q.Name)]
		if !known {
			resp.Rcode = dns.RcodeNameError
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				resp.Answer = append(resp.Answer, rr)
			}
		}
	}
	if len(resp.Answer) == 0 && len(req.Question) == 1 {
		for _, soa := range s.soa {
			if dns.IsSubDomain(soa.Hdr.Name, strings.ToLower(req.Question[0].Name)) {
				resp.Ns = append(resp.Ns, soa)
				break
			}
		}
	}
	w.WriteMsg(resp)
}
