/* geo_lead timeline (plain Leaflet, no plugin): a monthly choropleth and block points with a
 * range slider and a play button.
 * opts: {months, areas (GeoJSON, feature property _i = area index), counts (per month
 * {area index: weighted records}), points (per month [[point index, records], ...]),
 * table ([lat, lon, escaped address] per point), colors, breaks, title, parameters}
 * (title and parameters are escaped HTML). */
window.geoLeadTimeline = function (map, opts) {
  var months = opts.months, counts = opts.counts, points = opts.points, table = opts.table;
  var colors = opts.colors, breaks = opts.breaks;
  function colorFor(v) {
    if (!v) { return null; }
    for (var i = 0; i < breaks.length; i++) { if (v <= breaks[i]) { return colors[colors.length - breaks.length + i]; } }
    return colors[colors.length - 1];
  }
  // weighted counts: whole numbers as integers, others with one decimal
  function fmt(v) { return Math.abs(v - Math.round(v)) < 1e-9 ? String(Math.round(v)) : v.toFixed(1); }
  var current = 0;
  var areaLayer = L.geoJson(opts.areas, {
    className: 'geo-lead-timeline-areas',
    style: function (f) {
      var v = counts[current][f.properties._i] || 0, c = colorFor(v);
      return {color: '#666', weight: 0.8, fillColor: c || '#ffffff', fillOpacity: c ? 0.75 : 0.05};
    },
    onEachFeature: function (f, layer) {
      layer.bindTooltip(function () {
        return f.properties._tip + '<br>' + months[current] + ': ' + fmt(counts[current][f.properties._i] || 0) + ' records';
      }, {sticky: true});
    }
  }).addTo(map);
  var pointLayer = L.layerGroup().addTo(map);
  function show(i) {
    current = i;
    areaLayer.setStyle(areaLayer.options.style);
    pointLayer.clearLayers();
    points[i].forEach(function (p) {
      var t = table[p[0]];  // [lat, lon, escaped address]
      L.circleMarker([t[0], t[1]], {radius: 2 + Math.sqrt(p[1]) * 2, color: '#67000d', weight: 1,
        fillColor: '#cb181d', fillOpacity: 0.8, className: 'geo-lead-timeline-point'})
        .bindTooltip(t[2] + '<br>' + p[1] + ' records in ' + months[i]).addTo(pointLayer);
    });
    document.getElementById('geo-lead-month').textContent = months[i];
    var total = 0; for (var k in counts[i]) { total += counts[i][k]; }
    document.getElementById('geo-lead-month-total').textContent = fmt(total) + ' records mapped';
  }
  var box = L.control({position: 'topright'});
  box.onAdd = function () {
    var div = L.DomUtil.create('div', 'geo-lead-box geo-lead-slider');
    div.innerHTML = '<div class="geo-lead-title">' + opts.title + '</div>' +
      '<div class="geo-lead-params">' + opts.parameters + '</div>' +
      '<div class="geo-lead-title">Month: <span id="geo-lead-month"></span></div>' +
      '<input id="geo-lead-range" type="range" min="0" max="' + (months.length - 1) + '" value="0" step="1">' +
      '<div><button id="geo-lead-play" type="button">&#9654; play</button> <span id="geo-lead-month-total"></span></div>';
    L.DomEvent.disableClickPropagation(div);
    return div;
  };
  box.addTo(map);
  var range = document.getElementById('geo-lead-range'), timer = null;
  range.addEventListener('input', function () { show(parseInt(range.value, 10)); });
  document.getElementById('geo-lead-play').addEventListener('click', function () {
    if (timer) { clearInterval(timer); timer = null; return; }
    timer = setInterval(function () {
      var i = (parseInt(range.value, 10) + 1) % months.length;
      range.value = i; show(i);
    }, 800);
  });
  show(0);
};
