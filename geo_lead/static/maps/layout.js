/* geo_lead map layout (plain Leaflet, no network):
 * - fits the study area with padding scaled to the map's size (not fixed pixels);
 * - on a narrow screen (< 700 px) starts with the legend, notes and layer list collapsed to
 *   buttons, and shows one open box at a time so boxes never cover each other;
 * - shows neighborhood labels from the zoom each label asks for. */
window.geoLeadLayout = function (map, opts) {
  var NARROW_PX = 700;
  function narrow() { return map.getSize().x < NARROW_PX; }
  function fit() {
    if (!opts.bounds) { return; }
    var s = map.getSize(), small = narrow();
    // padding in proportion to the map; on a wide map also clear of the open side boxes
    // (their measured width, at most a quarter of the map each)
    var padX = Math.round(s.x * 0.03), padY = Math.round(s.y * (small ? 0.07 : 0.04));
    var left = padX, right = padX;
    if (!small) {
      var c = map.getContainer();
      var width = function (sel) {
        var w = 0;
        Array.prototype.forEach.call(c.querySelectorAll(sel), function (el) { w = Math.max(w, el.offsetWidth); });
        return Math.min(w, s.x * 0.25);
      };
      left = Math.max(padX, width('.leaflet-left .leaflet-control-layers, .leaflet-left .geo-lead-box') + 20);
      right = Math.max(padX, width('.leaflet-right .geo-lead-box') + 20);
    }
    map.fitBounds(opts.bounds, {paddingTopLeft: [left, padY], paddingBottomRight: [right, padY],
                                maxZoom: opts.maxZoom || 16, animate: false});
  }
  var boxes = Array.prototype.slice.call(map.getContainer().querySelectorAll('details.geo-lead-box'));
  var layers = opts.control || null;
  function others(keep) {
    // on a narrow map an open box may span the width: the other boxes step aside until it closes
    boxes.forEach(function (b) {
      if (b !== keep) { b.open = false; }
      b.classList.toggle('geo-lead-hidden', !!keep && b !== keep);
    });
    if (layers && keep) { layers.collapse(); }
  }
  function setMode() {
    var small = narrow();
    boxes.forEach(function (b) { b.open = !small; });
    if (layers) { if (small) { layers.collapse(); } else { layers.expand(); } }
  }
  boxes.forEach(function (b) {
    b.addEventListener('toggle', function () {
      if (!narrow()) { return; }
      if (b.open) { others(b); } else if (!boxes.some(function (o) { return o.open; })) { others(null); }
    });
  });
  if (layers) {
    var link = layers.getContainer().querySelector('.leaflet-control-layers-toggle');
    if (link) { link.addEventListener('click', function () { if (narrow()) { others(null); } }); }
    map.on('click', function () { if (narrow()) { layers.collapse(); } });
  }
  var labels = opts.labels || [];
  function showLabels() {
    var z = map.getZoom();
    labels.forEach(function (l) {
      var el = l.marker.getElement();
      if (el) { el.classList.toggle('geo-lead-off', z < l.minZoom); }
    });
  }
  if (opts.labelLayer) {
    opts.labelData.forEach(function (d) {  // [lat, lon, escaped name, min zoom]
      var m = L.marker([d[0], d[1]], {interactive: false, keyboard: false, zIndexOffset: 10000,
        icon: L.divIcon({className: 'geo-lead-label', html: '<span>' + d[2] + '</span>', iconSize: [0, 0]})});
      m.on('add', showLabels);
      labels.push({marker: m, minZoom: d[3]});
      opts.labelLayer.addLayer(m);
    });
    map.on('zoomend', showLabels);
  }
  setMode();
  fit();
  showLabels();
  window.geoLeadFitted = true;
  return {fit: fit, narrow: narrow};
};
