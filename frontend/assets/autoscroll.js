// Chat auto-scroll: follow the bottom of #message-scroller while it grows (a streaming answer),
// stop following as soon as the reader scrolls up, follow again once they are back at the bottom
// or send a message. "Scrolled up" is read from scrollTop having moved above where we last put it,
// so it holds even when a new token arrives before the browser delivers the scroll event.
(function () {
  var NEAR_BOTTOM_PX = 48;
  function attach() {
    var box = document.getElementById("message-scroller");
    if (!box || box.dataset.autoscroll === "on") return;
    box.dataset.autoscroll = "on";
    var following = true;
    var placed = box.scrollTop;
    function gap() { return box.scrollHeight - box.scrollTop - box.clientHeight; }
    box.addEventListener("scroll", function () {
      if (box.scrollTop + 2 < placed) following = false;
      if (gap() < NEAR_BOTTOM_PX) following = true;
      placed = Math.min(placed, box.scrollTop);
      box.dataset.following = String(following);
    });
    document.addEventListener("submit", function () { following = true; }, true);
    new MutationObserver(function () {
      if (following && box.scrollTop + 2 < placed) following = false;  // moved up since we scrolled
      if (!following) return;
      box.scrollTop = box.scrollHeight;
      placed = box.scrollTop;
    }).observe(box, { childList: true, subtree: true, characterData: true });
  }
  attach();
  new MutationObserver(attach).observe(document.documentElement, { childList: true, subtree: true });
})();
