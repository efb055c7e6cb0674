/* geo_lead collapsible box (<details>) of trusted HTML, built in Python from escaped parts.
 * Open on wide screens, a one-line button on narrow ones (layout.js).
 * opts: {position, cssClass, summary, html}. */
window.geoLeadControl = function (map, opts) {
  var box = L.control({position: opts.position});
  box.onAdd = function () {
    var div = L.DomUtil.create('details', opts.cssClass);
    div.innerHTML = '<summary>' + opts.summary + '</summary><div class="geo-lead-body">'
      + opts.html + '</div>';
    div.open = true;
    L.DomEvent.disableClickPropagation(div);
    L.DomEvent.disableScrollPropagation(div);
    return div;
  };
  box.addTo(map);
  return box;
};
