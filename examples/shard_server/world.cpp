// Zone simulation: see world.hpp. Numbers (speeds, radii, cooldowns) are game-design
// constants, chosen so a zone's tick does a realistic mix of grid queries, short-lived
// allocations (projectiles, per-tick scratch, frames) and long-lived state.
#include "world.hpp"

#include <algorithm>
#include <cstdlib>

namespace shard {

namespace {
constexpr std::int32_t player_speed = 40; // units per tick
constexpr std::int32_t npc_walk = 8;
constexpr std::int32_t npc_run = 12;
constexpr std::int32_t shoot_range = 200;
constexpr std::uint32_t shoot_cooldown = 20; // ticks
constexpr std::int32_t projectile_speed = 32;
constexpr std::uint32_t projectile_ttl = 16;
constexpr std::int64_t hit_radius = 24;

std::int64_t dist2(const entity &a, const entity &b) noexcept {
  std::int64_t dx = a.x - b.x, dy = a.y - b.y;
  return dx * dx + dy * dy;
}

/// Moves (x, y) toward (tx, ty) by at most `step` per axis.
void approach(std::int32_t &x, std::int32_t &y, std::int32_t tx, std::int32_t ty,
              std::int32_t step) noexcept {
  x += std::clamp(tx - x, -step, step);
  y += std::clamp(ty - y, -step, step);
}
} // namespace

zone_world::zone_world(std::pmr::memory_resource *mr, const zone_params &p)
    : mr_(mr), p_(p), cells_per_side_((p.size + p.cell - 1) / p.cell), alloc_(mr), entities_(mr),
      grid_(mr), players_by_id_(mr), rng_(p.seed * 0x9E3779B97F4A7C15ull + 1) {
  grid_.resize(static_cast<std::size_t>(cells_per_side_) * cells_per_side_);
  // Every cell owns its list from the start, so the world's block count does not creep
  // up as wandering NPCs touch new cells (a cell list that grows trades its block for a
  // bigger one; it never adds one).
  for (auto &c : grid_)
    c.reserve(4);
  entities_.reserve(p.npcs + 16);
  for (std::uint32_t i = 0; i < p_.npcs; ++i) {
    auto x = static_cast<std::int32_t>(next_random() % static_cast<std::uint64_t>(p_.size));
    auto y = static_cast<std::int32_t>(next_random() % static_cast<std::uint64_t>(p_.size));
    entity *e = spawn(proto::entity_kind::npc, x, y);
    e->tx = x;
    e->ty = y;
  }
}

zone_world::~zone_world() {
  // Only reached when the world is torn down object by object (the --plain mode, or a
  // heap that cannot be released whole); the kit mode releases the zone's heap instead.
  for (entity *e : entities_)
    alloc_.delete_object(e);
}

std::uint64_t zone_world::next_random() noexcept {
  // xorshift64*: deterministic per zone seed, no allocation.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 0x2545F4914F6CDD1Dull;
}

std::int32_t zone_world::clamp_coord(std::int64_t v) const noexcept {
  return static_cast<std::int32_t>(std::clamp<std::int64_t>(v, 0, p_.size - 1));
}

std::uint32_t zone_world::cell_of(std::int32_t x, std::int32_t y) const noexcept {
  return static_cast<std::uint32_t>((y / p_.cell) * cells_per_side_ + (x / p_.cell));
}

void zone_world::place(entity *e) {
  e->cell = cell_of(e->x, e->y);
  auto &c = grid_[e->cell];
  e->slot = static_cast<std::uint32_t>(c.size());
  c.push_back(e);
}

void zone_world::unplace(entity *e) {
  auto &c = grid_[e->cell];
  entity *last = c.back();
  c[e->slot] = last;
  last->slot = e->slot;
  c.pop_back();
}

void zone_world::move_to(entity *e, std::int32_t x, std::int32_t y) {
  x = clamp_coord(x);
  y = clamp_coord(y);
  std::uint32_t cell = cell_of(x, y);
  e->x = x;
  e->y = y;
  if (cell != e->cell) {
    unplace(e);
    place(e);
  }
}

entity *zone_world::spawn(proto::entity_kind kind, std::int32_t x, std::int32_t y) {
  entity *e = alloc_.new_object<entity>();
  e->kind = kind;
  e->x = clamp_coord(x);
  e->y = clamp_coord(y);
  if (kind != proto::entity_kind::player)
    e->id = next_id_++;
  e->index = static_cast<std::uint32_t>(entities_.size());
  entities_.push_back(e);
  place(e);
  return e;
}

void zone_world::despawn(entity *e) {
  unplace(e);
  entity *last = entities_.back();
  entities_[e->index] = last;
  last->index = e->index;
  entities_.pop_back();
  alloc_.delete_object(e);
}

bool zone_world::add_player(std::uint32_t id, std::uint64_t cookie, std::int32_t x,
                            std::int32_t y) {
  if (players_by_id_.contains(id))
    return false;
  entity *e = spawn(proto::entity_kind::player, x, y);
  e->id = id;
  e->cookie = cookie;
  e->tx = e->x;
  e->ty = e->y;
  players_by_id_.emplace(id, e);
  ++players_;
  return true;
}

bool zone_world::remove_player(std::uint32_t id) {
  auto it = players_by_id_.find(id);
  if (it == players_by_id_.end())
    return false;
  entity *e = it->second;
  players_by_id_.erase(it);
  for (entity *n : entities_)
    if (n->chase == id)
      n->chase = 0;
  despawn(e);
  --players_;
  return true;
}

bool zone_world::has_player(std::uint32_t id) const {
  return players_by_id_.contains(id);
}

bool zone_world::set_move(std::uint32_t id, std::uint32_t seq, std::int32_t x, std::int32_t y,
                          std::uint32_t &superseded, std::int32_t &px, std::int32_t &py) {
  auto it = players_by_id_.find(id);
  if (it == players_by_id_.end())
    return false;
  entity *e = it->second;
  bool had = e->move_pending;
  superseded = e->move_seq;
  px = e->x;
  py = e->y;
  e->tx = clamp_coord(x);
  e->ty = clamp_coord(y);
  e->move_seq = seq;
  e->move_pending = true;
  return had;
}

entity *zone_world::nearest_player(const entity &from, std::int32_t radius) const {
  entity *best = nullptr;
  std::int64_t best_d = std::int64_t{radius} * radius + 1;
  std::int32_t cx = from.x / p_.cell, cy = from.y / p_.cell;
  for (std::int32_t gy = std::max(0, cy - 1); gy <= std::min(cells_per_side_ - 1, cy + 1); ++gy)
    for (std::int32_t gx = std::max(0, cx - 1); gx <= std::min(cells_per_side_ - 1, cx + 1); ++gx)
      for (entity *e : grid_[static_cast<std::size_t>(gy * cells_per_side_ + gx)])
        if (e->kind == proto::entity_kind::player) {
          std::int64_t d = dist2(from, *e);
          if (d < best_d) {
            best_d = d;
            best = e;
          }
        }
  return best;
}

void zone_world::think(entity &npc, std::pmr::vector<entity *> &spawned) {
  if (npc.cooldown > 0)
    --npc.cooldown;
  entity *target = nearest_player(npc, p_.cell);
  if (target != nullptr) {
    npc.chase = target->id;
    std::int64_t d2 = dist2(npc, *target);
    if (d2 <= std::int64_t{shoot_range} * shoot_range && npc.cooldown == 0) {
      // Fire a projectile toward the player: a short-lived entity, allocated now and
      // freed a few ticks later (or when it hits).
      npc.cooldown = shoot_cooldown;
      entity *p = spawn(proto::entity_kind::projectile, npc.x, npc.y);
      std::int32_t dx = target->x - npc.x, dy = target->y - npc.y;
      std::int32_t m = std::max({std::abs(dx), std::abs(dy), 1});
      p->vx = dx * projectile_speed / m;
      p->vy = dy * projectile_speed / m;
      p->ttl = projectile_ttl;
      spawned.push_back(p);
    }
    std::int32_t x = npc.x, y = npc.y;
    approach(x, y, target->x, target->y, npc_run);
    move_to(&npc, x, y);
    return;
  }
  npc.chase = 0;
  if (npc.ttl == 0 || (npc.x == npc.tx && npc.y == npc.ty)) {
    npc.ttl = 20 + static_cast<std::uint32_t>(next_random() % 40);
    npc.tx = clamp_coord(npc.x + static_cast<std::int64_t>(next_random() % 601) - 300);
    npc.ty = clamp_coord(npc.y + static_cast<std::int64_t>(next_random() % 601) - 300);
  } else {
    --npc.ttl;
  }
  std::int32_t x = npc.x, y = npc.y;
  approach(x, y, npc.tx, npc.ty, npc_walk);
  move_to(&npc, x, y);
}

void zone_world::tick(std::pmr::vector<tick_output> &out, std::pmr::memory_resource *frame_mr) {
  ++tick_;
  // Per-tick scratch: allocated now, freed when the tick ends (local frees).
  std::pmr::vector<entity *> spawned(mr_);
  std::pmr::vector<entity *> dead(mr_);

  // 1. players walk toward their targets; NPCs think; projectiles fly.
  std::size_t n = entities_.size();
  for (std::size_t i = 0; i < n; ++i) {
    entity *e = entities_[i];
    switch (e->kind) {
    case proto::entity_kind::player: {
      std::int32_t x = e->x, y = e->y;
      approach(x, y, e->tx, e->ty, player_speed);
      move_to(e, x, y);
      break;
    }
    case proto::entity_kind::npc:
      think(*e, spawned);
      break;
    case proto::entity_kind::projectile:
      if (e->ttl == 0 || e->x + e->vx < 0 || e->y + e->vy < 0 || e->x + e->vx >= p_.size ||
          e->y + e->vy >= p_.size) {
        dead.push_back(e);
      } else {
        --e->ttl;
        move_to(e, e->x + e->vx, e->y + e->vy);
        entity *hit = nearest_player(*e, static_cast<std::int32_t>(hit_radius));
        if (hit != nullptr)
          dead.push_back(e);
      }
      break;
    }
  }
  for (entity *e : dead)
    despawn(e);

  // 2. interest management: each player gets the entities within one cell's distance.
  std::int64_t view2 = std::int64_t{p_.cell} * p_.cell;
  for (auto &[id, pl] : players_by_id_) {
    tick_output o{pl->cookie, proto::bytes(frame_mr)};
    if (pl->move_pending) {
      proto::encode_move_ack(o.frame, pl->move_seq, pl->x, pl->y);
      pl->move_pending = false;
    }
    proto::frame_writer w(o.frame, proto::opcode::update);
    w.u32(tick_);
    std::size_t count_at = o.frame.size();
    w.u16(0);
    std::uint16_t count = 0;
    std::int32_t cx = pl->x / p_.cell, cy = pl->y / p_.cell;
    for (std::int32_t gy = std::max(0, cy - 1); gy <= std::min(cells_per_side_ - 1, cy + 1); ++gy)
      for (std::int32_t gx = std::max(0, cx - 1); gx <= std::min(cells_per_side_ - 1, cx + 1); ++gx)
        for (entity *e : grid_[static_cast<std::size_t>(gy * cells_per_side_ + gx)]) {
          if (count == proto::max_visible || dist2(*pl, *e) > view2)
            continue;
          w.u32(e->id);
          w.u8(static_cast<std::uint8_t>(e->kind));
          w.i32(e->x);
          w.i32(e->y);
          ++count;
        }
    o.frame[count_at] = static_cast<std::uint8_t>(count);
    o.frame[count_at + 1] = static_cast<std::uint8_t>(count >> 8);
    w.finish();
    out.push_back(std::move(o));
  }
}

} // namespace shard
