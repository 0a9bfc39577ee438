// WeChat's privacy authorisation (基础库 2.32.3+, app.json "__usePrivacyCheck__": true): before a
// privacy API (wx.getLocation, the phone-number button, …) the user has not agreed to, WeChat
// calls wx.onNeedPrivacyAuthorization; this pop-up shows the privacy guide's name, a link to it and
// the agree button (open-type="agreePrivacyAuthorization"), then resolves WeChat's request.
// Put <privacy /> on every page that uses such an API.
Component({
  data: { show: false, contractName: '《隐私保护指引》' },
  lifetimes: {
    attached() {
      if (!wx.onNeedPrivacyAuthorization) return;
      wx.onNeedPrivacyAuthorization((resolve) => {
        this.resolve = resolve;
        this.setData({ show: true });
      });
      if (wx.getPrivacySetting) wx.getPrivacySetting({ success: (r) => { if (r.privacyContractName) this.setData({ contractName: r.privacyContractName }); } });
    }
  },
  methods: {
    openContract() { if (wx.openPrivacyContract) wx.openPrivacyContract({}); },
    agree() {
      this.setData({ show: false });
      if (this.resolve) this.resolve({ buttonId: 'agree-privacy', event: 'agree' });
      this.resolve = null;
    },
    disagree() {
      this.setData({ show: false });
      if (this.resolve) this.resolve({ event: 'disagree' });
      this.resolve = null;
      this.triggerEvent('disagree');
    }
  }
});
