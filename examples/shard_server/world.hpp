// The simulation of one zone: entities (players, NPCs with a small AI, projectiles), a
// uniform spatial grid for interest management, and a fixed-step tick that turns the
// zone's state into one UPDATE frame per player. No Asio and no threads here: a zone_world
// is touched only by its zone's strand.
//
// Memory: everything a zone_world allocates comes from the memory_resource it is given
// (in the kit mode, the resource over the current heap — the zone strand's heap). The
// world is built for arena-style teardown: when the zone's heap is released whole
// (ramalloc::heap::release_all), the world is dropped without running its destructor.
// The frames handed out by tick() are the one exception that outlives a tick: the
// caller counts them and waits for them before releasing the heap.
#pragma once

#include <cstdint>
#include <memory_resource>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol.hpp"

namespace shard {

struct zone_params {
  std::int32_t size = 4096; ///< the zone is size x size world units
  std::int32_t cell = 256;  ///< grid cell edge; also the view radius
  std::uint32_t npcs = 150; ///< NPCs spawned at creation and kept alive
  std::uint64_t seed = 1;
};

struct entity {
  std::uint32_t id = 0;
  proto::entity_kind kind = proto::entity_kind::npc;
  std::int32_t x = 0, y = 0;
  std::int32_t tx = 0, ty = 0; ///< move target (players, NPCs)
  std::int32_t vx = 0, vy = 0; ///< velocity (projectiles)
  std::uint32_t ttl = 0;       ///< ticks left (projectiles); think timer (NPCs)
  std::uint32_t chase = 0;     ///< NPC: id of the player it chases (0 none)
  std::uint32_t cooldown = 0;  ///< NPC: ticks until it may shoot again
  std::uint64_t cookie = 0;    ///< player: the server's session key
  std::uint32_t move_seq = 0;  ///< player: last MOVE seq not acked yet
  bool move_pending = false;
  std::uint32_t cell = 0, slot = 0; ///< position in the grid
  std::uint32_t index = 0;          ///< position in zone_world's entity list
};

/// One outgoing frame produced by a tick, addressed to a player's session.
struct tick_output {
  std::uint64_t cookie;
  proto::bytes frame;
};

class zone_world {
public:
  zone_world(std::pmr::memory_resource *mr, const zone_params &p);
  zone_world(const zone_world &) = delete;
  zone_world &operator=(const zone_world &) = delete;
  ~zone_world();

  /// Adds a player at (x, y) clamped into the zone. Returns false if the id is taken.
  bool add_player(std::uint32_t id, std::uint64_t cookie, std::int32_t x, std::int32_t y);
  /// Removes a player; false when absent. O(1).
  bool remove_player(std::uint32_t id);
  bool has_player(std::uint32_t id) const;
  /// Sets the player's move target; the MOVE is acked at the next tick with the
  /// authoritative position. If an older MOVE is still unacked, it is returned in
  /// `superseded` (the caller acks it at once) and true is returned.
  bool set_move(std::uint32_t id, std::uint32_t seq, std::int32_t x, std::int32_t y,
                std::uint32_t &superseded, std::int32_t &px, std::int32_t &py);
  /// Advances one step and appends one UPDATE (and any MOVE_ACK) per player to `out`,
  /// allocated from `frame_mr`. Work grows with NPCs + players x visible entities.
  void tick(std::pmr::vector<tick_output> &out, std::pmr::memory_resource *frame_mr);

  std::size_t players() const noexcept { return players_; }
  std::size_t entities() const noexcept { return entities_.size(); }
  std::uint32_t tick_number() const noexcept { return tick_; }
  std::int32_t size() const noexcept { return p_.size; }

private:
  entity *spawn(proto::entity_kind kind, std::int32_t x, std::int32_t y);
  void despawn(entity *e);
  void place(entity *e);
  void unplace(entity *e);
  void move_to(entity *e, std::int32_t x, std::int32_t y);
  std::uint32_t cell_of(std::int32_t x, std::int32_t y) const noexcept;
  entity *nearest_player(const entity &from, std::int32_t radius) const;
  void think(entity &npc, std::pmr::vector<entity *> &spawned);
  std::uint64_t next_random() noexcept;
  std::int32_t clamp_coord(std::int64_t v) const noexcept;

  std::pmr::memory_resource *mr_;
  zone_params p_;
  std::int32_t cells_per_side_;
  std::pmr::polymorphic_allocator<entity> alloc_;
  std::pmr::vector<entity *> entities_; ///< every entity, unordered
  std::pmr::vector<std::pmr::vector<entity *>> grid_;
  std::pmr::unordered_map<std::uint32_t, entity *> players_by_id_;
  std::size_t players_ = 0;
  std::uint32_t next_id_ = 1u << 24; ///< ids of NPCs and projectiles
  std::uint32_t tick_ = 0;
  std::uint64_t rng_;
};

} // namespace shard
