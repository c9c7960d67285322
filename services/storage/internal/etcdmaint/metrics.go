package etcdmaint

import (
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gauges and counters of the cell's etcd. Every replica
// exports the sizes and alarms; the defragmentation counters move on the
// elected replica only.
type metrics struct {
	dbSize  *prometheus.GaugeVec
	dbInUse *prometheus.GaugeVec
	dbQuota *prometheus.GaugeVec
	alarm   *prometheus.GaugeVec
	defrags *prometheus.CounterVec
	leader  prometheus.Gauge

	mu      sync.Mutex
	members map[string]bool // members with size series, to drop those that left
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		dbSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailfleet_storage_etcd_db_size_bytes",
			Help: "Size of each etcd member's database file (what the quota counts), from its Status.",
		}, []string{"member"}),
		dbInUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailfleet_storage_etcd_db_size_in_use_bytes",
			Help: "Bytes of each etcd member's database in use; the rest is free space that defragmentation gives back.",
		}, []string{"member"}),
		dbQuota: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailfleet_storage_etcd_db_quota_bytes",
			Help: "Each etcd member's --quota-backend-bytes: at this database size it raises NOSPACE and refuses writes.",
		}, []string{"member"}),
		alarm: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailfleet_storage_etcd_alarm_active",
			Help: "1 while etcd has an alarm of this type raised on any member (NOSPACE: writes refused; CORRUPT: a member's data differs).",
		}, []string{"alarm"}),
		defrags: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailfleet_storage_etcd_defrags_total",
			Help: "Defragmentations of etcd members run by this replica, by member and result (ok or failed).",
		}, []string{"member", "result"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailfleet_storage_etcd_defrag_leader",
			Help: "1 on the storage replica elected to defragment etcd (one per cell).",
		}),
		members: map[string]bool{},
	}
	reg.MustRegister(m.dbSize, m.dbInUse, m.dbQuota, m.alarm, m.defrags, m.leader)
	return m
}

// setMembers records the sizes of the members that answered and drops the
// series of those that no longer do.
func (m *metrics) setMembers(members []Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, mem := range members {
		if mem.Status == nil {
			continue
		}
		seen[mem.Name] = true
		m.dbSize.WithLabelValues(mem.Name).Set(float64(mem.Status.DbSize))
		m.dbInUse.WithLabelValues(mem.Name).Set(float64(mem.Status.DbSizeInUse))
		m.dbQuota.WithLabelValues(mem.Name).Set(float64(mem.Status.DbSizeQuota))
	}
	for name := range m.members {
		if !seen[name] {
			m.dbSize.DeleteLabelValues(name)
			m.dbInUse.DeleteLabelValues(name)
			m.dbQuota.DeleteLabelValues(name)
		}
	}
	m.members = seen
}

// setAlarms sets every alarm type's gauge, so that an alert can tell "no
// alarm" (0) from "not measured" (absent).
func (m *metrics) setAlarms(alarms []*pb.AlarmMember) {
	for value, name := range pb.AlarmType_name {
		if pb.AlarmType(value) == pb.AlarmType_NONE {
			continue
		}
		v := 0.0
		if hasAlarm(alarms, pb.AlarmType(value)) {
			v = 1
		}
		m.alarm.WithLabelValues(name).Set(v)
	}
}
