/* geo_lead block points in a marker cluster, built in the browser from a compact payload
 * (`geo_lead.map_layers.point_rows`): rows [lat, lon, n, address, match type code,
 * [count per flag], [[offence code, n], ...]]. Every string in it was HTML-escaped in Python;
 * numbers are integers. Clusters show the number of *records* they hold. */
window.geoLeadPointLayer = function (d) {
  var rows = d.rows;
  function popup(r) {
    var h = '<b>' + (r[3] || 'geocoded point') + '</b><br>records here: <b>' + r[2] + '</b>';
    if (d.match_types[r[4]]) { h += '<br>placed by: ' + d.match_types[r[4]] + ' match'; }
    var mix = [];
    r[5].forEach(function (c, i) { if (c > 0) { mix.push(d.flags[i] + ': ' + c); } });
    if (mix.length) { h += '<br>mix: ' + mix.join(', '); }
    if (r[6].length) {
      h += '<br>top offences:' + r[6].map(function (o) {
        return '<br>&nbsp;' + o[1] + ' &times; ' + d.offences[o[0]]; }).join('');
    }
    return h;
  }
  var group = L.markerClusterGroup({
    showCoverageOnHover: false, maxClusterRadius: 40, chunkedLoading: true,
    // block points stand apart from zoom 17 on: fewer cluster levels to build;
    // no pause between chunks (the page stays responsive within each 200 ms chunk)
    disableClusteringAtZoom: 17, chunkDelay: 1,
    // onAdd first "adds" an empty pending list (0 of 0): only our own full list counts
    chunkProgress: function (done, total) {
      if (total === rows.length && done === total) { window.geoLeadPointsLoaded = true; }
    },
    iconCreateFunction: function (c) {
      var n = 0;
      c.getAllChildMarkers().forEach(function (m) { n += m.options.n; });
      var size = n < 10 ? 'small' : (n < 100 ? 'medium' : 'large');
      return L.divIcon({html: '<div><span>' + n + '</span></div>',
        className: 'marker-cluster marker-cluster-' + size, iconSize: L.point(40, 40)});
    }
  });
  var style = {radius: 5, color: '#67000d', weight: 1, fillColor: '#cb181d', fillOpacity: 0.8,
               className: 'geo-lead-point'};
  var markers = new Array(rows.length);
  for (var i = 0; i < rows.length; i++) {
    var r = rows[i];
    // options are shared except n and the row; popups are built on click (no closure per marker)
    markers[i] = L.circleMarker([r[0], r[1]], Object.assign({}, style,
      {n: r[2], row: i, radius: 4 + Math.min(8, Math.sqrt(r[2]))}));
  }
  group.on('click', function (e) {
    var r = rows[e.layer.options.row];
    L.popup({maxWidth: 360}).setLatLng([r[0], r[1]]).setContent(popup(r)).openOn(e.target._map);
  });
  // add the markers once the group is on the map, so chunked loading keeps the page
  // responsive (off the map, markercluster would cluster all of them in one go)
  group.once('add', function () {
    group.addLayers(markers);
    if (!markers.length) { window.geoLeadPointsLoaded = true; }
  });
  return group;
};
