package gateway

// Connected is the number of bridges with a live connection on this
// instance (the eimis_bridges_connected gauge).
func (g *Gateway) Connected() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// Disconnects counts the connections that ended on this instance since it
// started, whatever the cause (eimis_bridge_disconnects_total): a bridge
// reconnecting in a loop shows as a fast-growing count.
func (g *Gateway) Disconnects() int64 { return g.disconnects.Load() }
