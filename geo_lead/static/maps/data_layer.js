/* geo_lead GeoJSON overlay (plain Leaflet): every feature carries its own style (`_s`) and
 * its tooltip/popup HTML (`_tip`, `_popup`), escaped in Python before they reach the page.
 * opts: {className, interactive, baseStyle}. */
window.geoLeadDataLayer = function (data, opts) {
  return L.geoJson(data, {
    className: opts.className, interactive: opts.interactive,
    style: function (f) { return Object.assign({}, opts.baseStyle, f.properties._s || {}); },
    onEachFeature: function (f, layer) {
      if (f.properties._tip) { layer.bindTooltip(f.properties._tip, {sticky: true}); }
      if (f.properties._popup) { layer.bindPopup(f.properties._popup, {maxWidth: 360}); }
    }
  });
};
